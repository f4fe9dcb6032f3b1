// The account-balance service: the balances of demo accounts, each owned by one customer.
import { NotFoundError } from '../../src/index.ts';

export interface Balance {
  accountId: string;
  currency: string;
  /** Minor units (cents), so no balance is ever rounded. */
  availableMinor: number;
}

export class BalanceService {
  readonly #accounts = new Map<string, { owner: string; balance: Balance }>();

  /** Seeds `count` accounts `acc-<i>` owned by customers `cust-<i>`. */
  constructor(count = 1000) {
    for (let i = 0; i < count; i++) {
      this.#accounts.set(`acc-${i}`, {
        owner: `cust-${i}`,
        balance: { accountId: `acc-${i}`, currency: 'EUR', availableMinor: 100_000 + i * 137 },
      });
    }
  }

  /** The balance of an account its owner asks for; anyone else learns nothing (404). */
  balanceOf(customer: string, accountId: string): Balance {
    const account = this.#accounts.get(accountId);
    if (account === undefined || account.owner !== customer) {
      throw new NotFoundError(`No account '${accountId}' for this customer`);
    }
    return { ...account.balance };
  }

  /** Moves money in or out, so tests can tell a fresh balance from a cached one. */
  adjust(accountId: string, deltaMinor: number): void {
    const account = this.#accounts.get(accountId);
    if (account === undefined) throw new NotFoundError(`No account '${accountId}'`);
    account.balance.availableMinor += deltaMinor;
  }
}
