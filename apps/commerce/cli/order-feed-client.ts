import { Client } from 'undici';

/** What the feed said of an order, or why it cannot say. */
export type FeedOutcome =
  | { readonly kind: 'ended'; readonly status: 'confirmed' | 'cancelled'; readonly atMs: number }
  /** Not seen within the deadline. */
  | { readonly kind: 'timeout' }
  /** The feed lost events (the log's retention passed them before they were read): ask about the order. */
  | { readonly kind: 'gap' }
  /** The feed is gone for good (the gateway has none, or it kept failing): ask about the order instead. */
  | { readonly kind: 'unavailable' };

interface Waiter {
  readonly deadlineMs: number;
  readonly settle: (outcome: FeedOutcome) => void;
}

/** How long an event for an order nobody waits for yet is kept (its 202 may still be on the way). */
const unclaimedForMs = 60_000;
/** Reconnections in a row that may fail before the feed is given up. */
const maxReconnects = 5;

/**
 * A client of the commerce gateway's order feed (`GET /orders/events`, Server-Sent Events): one
 * connection tells the load generator about every order that ends, instead of one status request
 * per order. Resumes with Last-Event-ID when the stream drops, so no event is missed; gives up
 * (every waiter told `unavailable`) when the gateway has no feed or it keeps failing.
 */
export class OrderFeedClient {
  readonly #client: Client;
  readonly #path: string;
  readonly #now: () => number;
  readonly #waiters = new Map<string, Waiter>();
  /** Events that arrived before anyone waited for their order, with when they arrived. */
  readonly #unclaimed = new Map<string, FeedOutcome & { kind: 'ended' }>();
  #lastEventId: string | undefined;
  #closed = false;
  #unavailable = false;
  #failures = 0;
  readonly #sweeper: NodeJS.Timeout;

  readonly #token: string | undefined;

  constructor(origin: string, path: string, now: () => number = () => performance.now(), token?: string) {
    this.#client = new Client(origin, { bodyTimeout: 0, headersTimeout: 10_000 });
    this.#token = token;
    this.#path = path;
    this.#now = now;
    this.#sweeper = setInterval(() => this.#sweep(), 250);
    this.#sweeper.unref();
  }

  /** False once the feed was given up (or never opened). */
  get available(): boolean {
    return !this.#unavailable;
  }

  /**
   * Connects; resolves true once the stream is open, false when the gateway has no feed (or the
   * first connection failed): the caller then follows orders one by one.
   */
  async open(): Promise<boolean> {
    const opened = await this.#connect();
    if (!opened) this.#giveUp();
    return opened;
  }

  /** Resolves when the feed reports `orderId` ended, `deadlineMs` (on `now`'s scale) passes, or the feed is gone. */
  until(orderId: string, deadlineMs: number): Promise<FeedOutcome> {
    const early = this.#unclaimed.get(orderId);
    if (early !== undefined) {
      this.#unclaimed.delete(orderId);
      return Promise.resolve(early);
    }
    if (this.#unavailable) return Promise.resolve({ kind: 'unavailable' });
    return new Promise((settle) => this.#waiters.set(orderId, { deadlineMs, settle }));
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#sweeper);
    this.#client.destroy().catch(() => undefined);
    this.#giveUp();
  }

  /** Opens the stream and starts reading it in the background; false when it did not open. */
  async #connect(): Promise<boolean> {
    let response: Awaited<ReturnType<Client['request']>>;
    try {
      response = await this.#client.request({
        method: 'GET',
        path: this.#path,
        headers: {
          accept: 'text/event-stream',
          ...(this.#token === undefined ? {} : { authorization: `Bearer ${this.#token}` }),
          ...(this.#lastEventId === undefined ? {} : { 'last-event-id': this.#lastEventId }),
        },
      });
    } catch {
      return false;
    }
    const type = String(response.headers['content-type'] ?? '');
    if (response.statusCode !== 200 || !type.startsWith('text/event-stream')) {
      await response.body.dump().catch(() => undefined);
      return false;
    }
    void this.#read(response.body);
    return true;
  }

  async #read(body: NodeJS.ReadableStream & AsyncIterable<string>): Promise<void> {
    body.setEncoding('utf8');
    let buffered = '';
    try {
      for await (const chunk of body) {
        this.#failures = 0;
        buffered += chunk;
        let end = buffered.indexOf('\n\n');
        while (end !== -1) {
          this.#dispatch(buffered.slice(0, end));
          buffered = buffered.slice(end + 2);
          end = buffered.indexOf('\n\n');
        }
      }
    } catch {
      // The stream dropped: resume below.
    }
    if (this.#closed) return;
    // Resume from the last event seen; a gateway that keeps refusing is given up on.
    while (!this.#closed && this.#failures < maxReconnects) {
      this.#failures += 1;
      await new Promise((resolve) => setTimeout(resolve, 100 * this.#failures));
      if (await this.#connect()) return;
    }
    this.#giveUp();
  }

  /** One event block: `id:`, `event:` and `data:` lines (comments and `retry:` ignored). */
  #dispatch(block: string): void {
    let event = 'message';
    let data = '';
    for (const line of block.split('\n')) {
      if (line.startsWith('id:')) this.#lastEventId = line.slice(3).trimStart();
      else if (line.startsWith('event:')) event = line.slice(6).trim();
      // Several data lines make one value, joined by newlines (the SSE format).
      else if (line.startsWith('data:')) data += (data === '' ? '' : '\n') + line.slice(5).trimStart();
    }
    if (event === 'gap') {
      this.#gap();
      return;
    }
    if (event !== 'order' || data === '') return;
    let parsed: { orderId?: unknown; status?: unknown };
    try {
      parsed = JSON.parse(data);
    } catch {
      return;
    }
    const { orderId, status } = parsed;
    if (typeof orderId !== 'string' || (status !== 'confirmed' && status !== 'cancelled')) return;
    const outcome = { kind: 'ended', status, atMs: this.#now() } as const;
    const waiter = this.#waiters.get(orderId);
    if (waiter === undefined) {
      this.#unclaimed.set(orderId, outcome);
      return;
    }
    this.#waiters.delete(orderId);
    waiter.settle(outcome);
  }

  /** Times out waiters past their deadline and forgets events nobody claimed. */
  #sweep(): void {
    const nowMs = this.#now();
    for (const [orderId, waiter] of this.#waiters) {
      if (waiter.deadlineMs > nowMs) continue;
      this.#waiters.delete(orderId);
      waiter.settle({ kind: 'timeout' });
    }
    for (const [orderId, event] of this.#unclaimed) {
      if (nowMs - event.atMs < unclaimedForMs) break;
      this.#unclaimed.delete(orderId);
    }
  }

  /** Events were lost: every order waited for may have ended unseen; its waiter asks instead. */
  #gap(): void {
    for (const waiter of this.#waiters.values()) waiter.settle({ kind: 'gap' });
    this.#waiters.clear();
  }

  #giveUp(): void {
    this.#unavailable = true;
    for (const waiter of this.#waiters.values()) waiter.settle({ kind: 'unavailable' });
    this.#waiters.clear();
  }
}
