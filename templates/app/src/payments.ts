import { TerminalError } from 'meridian';

/**
 * A stand-in for a payment provider: replace it with yours. Like a real one it deduplicates on
 * the idempotency key, so a step retried after a crash charges once.
 */
export const payments = {
  /** Declines amounts over this many cents, so the tests can exercise the compensation. */
  limitCents: 100_000,
  charges: new Map<string, { chargeId: string; amountCents: number; refunded: boolean }>(),

  async charge(idempotencyKey: string, amountCents: number): Promise<{ chargeId: string }> {
    if (amountCents > this.limitCents)
      throw new TerminalError(`card declined: ${amountCents} cents is over the limit`);
    const existing = this.charges.get(idempotencyKey);
    if (existing !== undefined) return { chargeId: existing.chargeId };
    const chargeId = `ch_${this.charges.size + 1}`;
    this.charges.set(idempotencyKey, { chargeId, amountCents, refunded: false });
    return { chargeId };
  },

  async refund(chargeId: string): Promise<void> {
    for (const charge of this.charges.values()) if (charge.chargeId === chargeId) charge.refunded = true;
  },
};
