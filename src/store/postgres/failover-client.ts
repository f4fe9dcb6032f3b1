// The pg Client that finds, among several PostgreSQL hosts, the one accepting writes (hosts.ts).
import pg from 'pg';
import { RetryableError } from '../../errors.ts';
import { type PostgresHost, type PostgresTarget, postgresUrlFor } from './hosts.ts';

/** A connection that reached a standby while a writable server was asked for. */
export class StandbyServerError extends RetryableError {
  constructor(host: PostgresHost) {
    super(
      `PostgreSQL at ${host.host}:${host.port} is a standby (in recovery) and does not accept writes: the next connection tries the next host`,
      { details: { sqlState: '25006' } },
    );
  }
}

type ConnectCallback = ((error: Error) => void) | ((error: null, client: pg.Client) => void);

/**
 * A pg Client class (for `new pg.Pool({ Client })`) spreading connections over the target's hosts
 * the way libpq does: each connection goes to the host the last good one went to; a refused
 * connection, or with `writable` a server in recovery, moves that choice on to the next host, so
 * after a failover the pool finds the promoted server by itself.
 */
export function failoverClient(target: PostgresTarget): FailoverClientClass {
  let current = 0;
  class FailoverClient extends pg.Client {
    readonly #index: number;

    constructor(config: pg.ClientConfig = {}) {
      const index = current % target.hosts.length;
      const host = target.hosts[index] as PostgresHost;
      super({ ...config, connectionString: postgresUrlFor(target, host) });
      this.#index = index;
    }

    override connect(): Promise<pg.Client>;
    override connect(callback: ConnectCallback): void;
    override connect(callback?: ConnectCallback): Promise<pg.Client> | undefined {
      const connected = this.#connect();
      if (callback === undefined) return connected;
      connected.then(
        (client) => (callback as (error: null, client: pg.Client) => void)(null, client),
        (error: Error) => (callback as (error: Error) => void)(error),
      );
      return undefined;
    }

    async #connect(): Promise<pg.Client> {
      try {
        await super.connect();
        if (target.writable) {
          const result = await this.query<{ standby: boolean }>('SELECT pg_is_in_recovery() AS standby');
          if (result.rows[0]?.standby === true) {
            await this.end().catch(() => undefined);
            throw new StandbyServerError(target.hosts[this.#index] as PostgresHost);
          }
        }
        return this;
      } catch (error) {
        if (current % target.hosts.length === this.#index) current = this.#index + 1;
        throw error;
      }
    }
  }
  const locate = async (timeoutMs: number): Promise<void> => {
    for (const [index, host] of target.hosts.entries()) {
      const probe = new pg.Client({
        connectionString: postgresUrlFor(target, host),
        connectionTimeoutMillis: timeoutMs,
      });
      probe.on('error', () => {});
      try {
        await probe.connect();
        const result = await probe.query<{ standby: boolean }>('SELECT pg_is_in_recovery() AS standby');
        if (result.rows[0]?.standby !== true || !target.writable) {
          current = index;
          return;
        }
      } catch {
        // Down or unreachable: the next host.
      } finally {
        await probe.end().catch(() => undefined);
      }
    }
  };
  return Object.assign(FailoverClient as unknown as typeof pg.Client, { locate });
}

/** A pg Client class with `locate`: points new connections at the first host that takes writes now. */
export type FailoverClientClass = typeof pg.Client & { locate(timeoutMs: number): Promise<void> };
