import { closeSync, fsyncSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { assert, ClosedError, ValidationError } from '../../src/index.ts';

export type ChargeStatus = 'charged' | 'refunded';

export interface Charge {
  readonly chargeId: string;
  readonly orderId: string;
  readonly amount: number;
  readonly status: ChargeStatus;
  readonly idempotencyKey: string;
  readonly chargedAt: number;
  readonly refundId?: string;
}

export interface Refund {
  readonly refundId: string;
  readonly chargeId: string;
  readonly orderId: string;
  readonly amount: number;
  readonly idempotencyKey: string;
  readonly refundedAt: number;
}

/**
 * A block of ids set aside before any of them is handed out, written and fsynced first: ids
 * handed out after a restart start past every block reserved before it, so an id a caller saw
 * is never given to another charge, even if its entry was lost (an OS crash without fsync).
 */
interface Reservation {
  kind: 'reserve';
  what: 'charge' | 'refund';
  upTo: number;
}

type Entry =
  | ({ kind: 'charge' } & Omit<Charge, 'status' | 'refundId'>)
  | ({ kind: 'refund' } & Refund)
  | Reservation;

/** Ids reserved per block: one fsync per this many charges (or refunds). */
const idBlock = 1000;

/** Hands out sequence numbers from reserved blocks (see Reservation). */
class IdSequence {
  next = 1;
  reservedUpTo = 0;

  /** Replays an id seen in the file, or a reservation. */
  saw(sequence: number): void {
    this.next = Math.max(this.next, sequence + 1);
  }

  reserved(upTo: number): void {
    this.reservedUpTo = Math.max(this.reservedUpTo, upTo);
  }

  /** After a replay: nothing reserved before may be handed out again. */
  skipReserved(): void {
    this.next = Math.max(this.next, this.reservedUpTo + 1);
  }
}

export type ChargeOutcome =
  | { readonly outcome: 'created' | 'replayed'; readonly charge: Charge }
  /** The key was used before for another order or amount. */
  | { readonly outcome: 'key_reused'; readonly charge: Charge };

export type RefundOutcome =
  | { readonly outcome: 'created' | 'replayed'; readonly refund: Refund }
  | { readonly outcome: 'unknown_charge' }
  /** The key was used before to refund another charge. */
  | { readonly outcome: 'key_reused'; readonly refund: Refund };

/** One page of the listing of every charge (or refund), in the order they were made. */
export interface LedgerPage<T> {
  readonly items: T[];
  /** The last item of this page when more follow (pass it as `after`); null on the last page. */
  readonly next: string | null;
}

/** The most charges (or refunds) one page holds, and how many when the caller does not say. */
export const maxChargePageSize = 1000;
export const defaultChargePageSize = 100;

/**
 * Ids in the order they were made, and each id's place in it, so that pages start anywhere. The
 * oldest can be dropped (a ledger that forgets): places count from the first id ever pushed, and
 * `#ids` holds those from place `#base` on, `#head` of them already dropped.
 */
class MadeInOrder {
  #ids: string[] = [];
  readonly #place = new Map<string, number>();
  readonly #what: 'charge' | 'refund';
  #base = 0;
  #head = 0;

  constructor(what: 'charge' | 'refund') {
    this.#what = what;
  }

  push(id: string): void {
    this.#place.set(id, this.#base + this.#ids.length);
    this.#ids.push(id);
  }

  /** The oldest id not dropped, if any. */
  oldest(): string | undefined {
    return this.#ids[this.#head];
  }

  dropOldest(): void {
    const id = this.#ids[this.#head];
    if (id === undefined) return;
    this.#place.delete(id);
    this.#head += 1;
    // Compacted once the dropped ids are most of the array: amortised O(1) a drop.
    if (this.#head >= 1024 && this.#head * 2 >= this.#ids.length) {
      this.#ids = this.#ids.slice(this.#head);
      this.#base += this.#head;
      this.#head = 0;
    }
  }

  /**
   * Up to `limit` ids (an integer in [1, 1000]) right after `after` (from the first when
   * omitted), and the cursor of the next page. An `after` that names nothing is a
   * ValidationError: a cursor comes from an earlier page, so it always names one.
   */
  page(limit: number, after: string | undefined): { ids: string[]; next: string | null } {
    if (!Number.isInteger(limit) || limit < 1 || limit > maxChargePageSize) {
      throw new ValidationError(
        `'limit' must be an integer in [1, ${maxChargePageSize}]: current value is ${String(limit)}`,
      );
    }
    let start = this.#head;
    if (after !== undefined) {
      const place = this.#place.get(after);
      if (place === undefined) {
        throw new ValidationError(
          `'after' must name a ${this.#what}: no ${this.#what} '${String(after)}' exists${this.#base + this.#head > 0 ? ' (or it was forgotten)' : ''}`,
        );
      }
      start = place - this.#base + 1;
    }
    const end = Math.min(start + limit, this.#ids.length);
    return { ids: this.#ids.slice(start, end), next: end < this.#ids.length ? this.#ids[end - 1]! : null };
  }
}

export interface PaymentLedgerOptions {
  /**
   * A file to keep the ledger in (JSON lines, appended). Each entry is written with a
   * synchronous write before the call returns, so a charge the gateway accepted survives the
   * process being killed right after. Omitted: the ledger lives in memory only.
   */
  path?: string;
  /** Also fsync each entry, so it survives an OS crash or power loss. @default false */
  fsync?: boolean;
  /**
   * Forget charges and refunds this long after they were made (ms, 1000 to 31536000000), as
   * real providers expire idempotency keys (Stripe's after 24 hours): they leave memory (the
   * file keeps them; a restart loads and forgets them again), their keys may then charge anew,
   * and a forgotten charge can no longer be refunded. For a gateway that runs for hours (the
   * soak), whose memory would otherwise grow with every charge. Omitted: nothing is forgotten.
   */
  forgetAfterMs?: number;
}

/** At most this many charges (and refunds) are forgotten per call: bounded work per request. */
const forgetBatch = 64;

/**
 * What the simulated payment gateway accepted: every charge and refund, keyed by the caller's
 * idempotency key, so the same key can never charge twice. The invariant checks of the commerce
 * app read it to prove "no order charged twice, every cancelled charge refunded".
 */
export class PaymentLedger {
  readonly #charges = new Map<string, Charge>();
  readonly #chargeOrder = new MadeInOrder('charge');
  /** Each order's charge ids, in order: one order's charges without a scan of the ledger. */
  readonly #chargesByOrder = new Map<string, string[]>();
  readonly #chargesByKey = new Map<string, string>();
  readonly #refunds = new Map<string, Refund>();
  readonly #refundOrder = new MadeInOrder('refund');
  readonly #refundsByKey = new Map<string, string>();
  readonly #refundsByCharge = new Map<string, string>();
  #fd: number | undefined;
  readonly #fsync: boolean;
  readonly #path: string | undefined;
  /** Bytes of whole entries in the file: a failed append is cut back to this. */
  #size = 0;
  readonly #chargeIds = new IdSequence();
  readonly #refundIds = new IdSequence();
  readonly #forgetAfterMs: number | undefined;

  constructor(options: PaymentLedgerOptions = {}) {
    this.#fsync = options.fsync ?? false;
    this.#path = options.path;
    const forgetAfterMs = options.forgetAfterMs;
    if (
      forgetAfterMs !== undefined &&
      (!Number.isInteger(forgetAfterMs) || forgetAfterMs < 1000 || forgetAfterMs > 31_536_000_000)
    ) {
      throw new ValidationError(
        `'forgetAfterMs' must be an integer in [1000, 31536000000] (ms): current value is ${String(forgetAfterMs)}`,
      );
    }
    this.#forgetAfterMs = forgetAfterMs;
    if (options.path === undefined) return;
    if (typeof options.path !== 'string' || options.path.length === 0) {
      throw new ValidationError(
        `'path' must be a non-empty file path: current value is '${String(options.path)}'`,
      );
    }
    this.#fd = openSync(options.path, 'a+');
    this.#load(options.path);
    this.#chargeIds.skipReserved();
    this.#refundIds.skipReserved();
  }

  /**
   * Charges in the order they were made: one order's (from its index, no scan), or every charge
   * (in-process callers only: over HTTP the full listing is paged, see `page`).
   */
  charges(orderId?: string): Charge[] {
    if (orderId === undefined) return [...this.#charges.values()];
    return (this.#chargesByOrder.get(orderId) ?? []).map((chargeId) => this.#charges.get(chargeId)!);
  }

  /**
   * Up to `limit` charges (an integer in [1, 1000]) in the order they were made, starting right
   * after the charge `after` (from the first when omitted).
   */
  page(options: { limit: number; after?: string }): LedgerPage<Charge> {
    const { ids, next } = this.#chargeOrder.page(options.limit, options.after);
    return { items: ids.map((chargeId) => this.#charges.get(chargeId)!), next };
  }

  /**
   * The one refund of a charge (a charge has at most one), or every refund in the order they
   * were made (in-process callers only: over HTTP the full listing is paged, see `refundPage`).
   */
  refunds(chargeId?: string): Refund[] {
    if (chargeId === undefined) return [...this.#refunds.values()];
    const refundId = this.#refundsByCharge.get(chargeId);
    return refundId === undefined ? [] : [this.#refunds.get(refundId)!];
  }

  /** Up to `limit` refunds in the order they were made, starting right after the refund `after`. */
  refundPage(options: { limit: number; after?: string }): LedgerPage<Refund> {
    const { ids, next } = this.#refundOrder.page(options.limit, options.after);
    return { items: ids.map((refundId) => this.#refunds.get(refundId)!), next };
  }

  charge(request: { orderId: string; amount: number; idempotencyKey: string }, atMs: number): ChargeOutcome {
    this.#forget(atMs);
    const existingId = this.#chargesByKey.get(request.idempotencyKey);
    if (existingId !== undefined) {
      const existing = this.#charges.get(existingId)!;
      const same = existing.orderId === request.orderId && existing.amount === request.amount;
      return { outcome: same ? 'replayed' : 'key_reused', charge: existing };
    }
    const entry: Entry = {
      kind: 'charge',
      chargeId: `ch_${String(this.#take(this.#chargeIds, 'charge')).padStart(8, '0')}`,
      orderId: request.orderId,
      amount: request.amount,
      idempotencyKey: request.idempotencyKey,
      chargedAt: atMs,
    };
    this.#persist(entry);
    this.#apply(entry);
    return { outcome: 'created', charge: this.#charges.get(entry.chargeId)! };
  }

  /**
   * Refunds a charge in full. A charge is refunded at most once: a second refund request for it,
   * under any key, gets the first refund back rather than paying out twice.
   */
  refund(request: { chargeId: string; idempotencyKey: string }, atMs: number): RefundOutcome {
    this.#forget(atMs);
    const byKey = this.#refundsByKey.get(request.idempotencyKey);
    if (byKey !== undefined) {
      const refund = this.#refunds.get(byKey)!;
      return { outcome: refund.chargeId === request.chargeId ? 'replayed' : 'key_reused', refund };
    }
    const charge = this.#charges.get(request.chargeId);
    if (charge === undefined) return { outcome: 'unknown_charge' };
    const earlier = this.#refundsByCharge.get(charge.chargeId);
    if (earlier !== undefined) return { outcome: 'replayed', refund: this.#refunds.get(earlier)! };
    const entry: Entry = {
      kind: 'refund',
      refundId: `re_${String(this.#take(this.#refundIds, 'refund')).padStart(8, '0')}`,
      chargeId: charge.chargeId,
      orderId: charge.orderId,
      amount: charge.amount,
      idempotencyKey: request.idempotencyKey,
      refundedAt: atMs,
    };
    this.#persist(entry);
    this.#apply(entry);
    return { outcome: 'created', refund: this.#refunds.get(entry.refundId)! };
  }

  /** Forgets (from memory) up to `forgetBatch` charges and refunds made `forgetAfterMs` or more before `atMs`. */
  #forget(atMs: number): void {
    if (this.#forgetAfterMs === undefined) return;
    const before = atMs - this.#forgetAfterMs;
    for (let dropped = 0; dropped < forgetBatch; dropped += 1) {
      const charge = this.#charges.get(this.#chargeOrder.oldest() ?? '');
      if (charge === undefined || charge.chargedAt > before) break;
      this.#chargeOrder.dropOldest();
      this.#charges.delete(charge.chargeId);
      if (this.#chargesByKey.get(charge.idempotencyKey) === charge.chargeId)
        this.#chargesByKey.delete(charge.idempotencyKey);
      // Charges are forgotten oldest first, so this one is the first of its order's.
      const ofOrder = this.#chargesByOrder.get(charge.orderId);
      ofOrder?.shift();
      if (ofOrder?.length === 0) this.#chargesByOrder.delete(charge.orderId);
    }
    for (let dropped = 0; dropped < forgetBatch; dropped += 1) {
      const refund = this.#refunds.get(this.#refundOrder.oldest() ?? '');
      // Never before its charge: a remembered charge marked refunded must find its refund, or a
      // second refund request would pay out again.
      if (refund === undefined || refund.refundedAt > before || this.#charges.has(refund.chargeId)) break;
      this.#refundOrder.dropOldest();
      this.#refunds.delete(refund.refundId);
      if (this.#refundsByKey.get(refund.idempotencyKey) === refund.refundId)
        this.#refundsByKey.delete(refund.idempotencyKey);
      if (this.#refundsByCharge.get(refund.chargeId) === refund.refundId)
        this.#refundsByCharge.delete(refund.chargeId);
    }
  }

  /** Closes the file; the ledger stays readable. Calling it again does nothing. */
  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  /** The next id of a sequence, reserving (durably) a new block first when the last one is used up. */
  #take(sequence: IdSequence, what: 'charge' | 'refund'): number {
    if (sequence.next > sequence.reservedUpTo) {
      const upTo = sequence.next + idBlock - 1;
      this.#persist({ kind: 'reserve', what, upTo }, true);
      sequence.reserved(upTo);
    }
    const id = sequence.next;
    sequence.next += 1;
    return id;
  }

  /**
   * Appends one entry. A failed append (disk full, I/O error) is cut back to the last whole
   * entry, so no torn line is left for the next entry to be appended after (which would make
   * the file unreadable at the next start), and the error goes to the caller: nothing happened.
   */
  #persist(entry: Entry, fsync = this.#fsync): void {
    if (this.#path === undefined) return;
    if (this.#fd === undefined) throw new ClosedError(`The payment ledger ${this.#path} is closed`);
    const bytes = Buffer.from(`${JSON.stringify(entry)}\n`);
    let written = 0;
    try {
      while (written < bytes.length) written += writeSync(this.#fd, bytes, written);
      if (fsync) fsyncSync(this.#fd);
    } catch (error) {
      try {
        ftruncateSync(this.#fd, this.#size);
      } catch {
        // The next start cuts a torn last line off anyway.
      }
      throw error;
    }
    this.#size += bytes.length;
  }

  #apply(entry: Entry): void {
    if (entry.kind === 'reserve') {
      (entry.what === 'charge' ? this.#chargeIds : this.#refundIds).reserved(entry.upTo);
      return;
    }
    if (entry.kind === 'charge') {
      this.#chargeIds.saw(sequenceOf(entry.chargeId));
      const { kind: _kind, ...charge } = entry;
      assert(!this.#charges.has(charge.chargeId), `charge ${charge.chargeId} is recorded twice`);
      this.#charges.set(charge.chargeId, { ...charge, status: 'charged' });
      this.#chargesByKey.set(charge.idempotencyKey, charge.chargeId);
      this.#chargeOrder.push(charge.chargeId);
      const ofOrder = this.#chargesByOrder.get(charge.orderId);
      if (ofOrder === undefined) this.#chargesByOrder.set(charge.orderId, [charge.chargeId]);
      else ofOrder.push(charge.chargeId);
    } else {
      this.#refundIds.saw(sequenceOf(entry.refundId));
      const { kind: _kind, ...refund } = entry;
      const charge = this.#charges.get(refund.chargeId);
      assert(charge !== undefined, `refund ${refund.refundId} names unknown charge ${refund.chargeId}`);
      this.#refunds.set(refund.refundId, refund);
      this.#refundOrder.push(refund.refundId);
      this.#refundsByKey.set(refund.idempotencyKey, refund.refundId);
      this.#refundsByCharge.set(refund.chargeId, refund.refundId);
      this.#charges.set(charge.chargeId, { ...charge, status: 'refunded', refundId: refund.refundId });
    }
  }

  /**
   * Replays the file. A kill can leave the last line half-written: it is cut off (the write it
   * belongs to never returned, so no caller saw that charge). A bad line anywhere else is
   * corruption and stops the load.
   */
  #load(path: string): void {
    const text = readFileSync(path, 'utf8');
    let offset = 0;
    while (offset < text.length) {
      const end = text.indexOf('\n', offset);
      if (end === -1) {
        this.#size = Buffer.byteLength(text.slice(0, offset));
        ftruncateSync(this.#fd!, this.#size);
        return;
      }
      const line = text.slice(offset, end);
      let entry: Entry;
      try {
        entry = JSON.parse(line) as Entry;
      } catch (error) {
        throw new ValidationError(`The payment ledger ${path} is corrupt at character ${offset}`, {
          cause: error,
        });
      }
      this.#apply(entry);
      offset = end + 1;
    }
    this.#size = Buffer.byteLength(text);
  }
}

/** The number in `ch_00000042` or `re_00000042`. */
function sequenceOf(id: string): number {
  const sequence = Number(id.slice(3));
  assert(Number.isSafeInteger(sequence) && sequence > 0, `'${id}' is not a ledger id`);
  return sequence;
}
