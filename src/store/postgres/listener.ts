import { hash } from 'node:crypto';
import pg from 'pg';
import { ClosedError } from '../../errors.ts';
import { systemTimers, type TimerHandle, type Timers } from '../../time.ts';
import { requireChannel } from '../limits.ts';
import { ListenerRegistry, type NotificationListener, requireListener } from '../sql/listeners.ts';
import { notificationsMayBeMissed } from '../types.ts';
import { mapPostgresError } from './errors.ts';

/** Reconnect delays after the listening connection drops: doubling from the first to the cap. */
const firstReconnectDelayMs = 100;
const maxReconnectDelayMs = 5000;

/**
 * The server-side channel of a store channel. Scoped to the schema, so stores of two schemas
 * (tenants, test runs) on one database do not hear each other, and always a short plain
 * identifier, so it fits PostgreSQL's 63-byte limit whatever the schema name.
 */
export function postgresChannel(schema: string, channel: string): string {
  const digest = hash('sha256', `${schema}/${channel}`, 'hex');
  return `meridian_${digest.slice(0, 32)}`;
}

/**
 * `Store.listen` on PostgreSQL: one dedicated connection (not a pooled one: it stays in LISTEN
 * for as long as anyone listens) carrying LISTEN for every channel with a listener. When it drops
 * it reconnects with a bounded backoff, LISTENs again, and calls every listener with
 * `notificationsMayBeMissed`, since notifications sent meanwhile are lost.
 */
export class PostgresListener {
  readonly #config: pg.ClientConfig;
  readonly #schema: string;
  readonly #timers: Timers;
  readonly #listeners = new ListenerRegistry();
  /** Server-side channel names back to the store's. */
  readonly #channels = new Map<string, string>();
  #client: pg.Client | undefined;
  #connecting: Promise<pg.Client> | undefined;
  #reconnect: TimerHandle | undefined;
  #failedReconnects = 0;
  #closed = false;

  constructor(config: pg.ClientConfig, schema: string, timers: Timers = systemTimers) {
    // The listening connection runs one LISTEN at a time: no pipeline (the pool's clients use one).
    this.#config = { ...config, application_name: 'meridian-listen', keepAlive: true, pipeline: false };
    this.#schema = schema;
    this.#timers = timers;
  }

  /** See `Store.listen`. */
  async listen(channel: string, listener: (payload: string) => void): Promise<() => Promise<void>> {
    if (this.#closed) throw new ClosedError('The PostgreSQL store is closed');
    requireChannel('channel', channel);
    const callback = requireListener(listener);
    const entry: NotificationListener = (payload) => callback(payload);
    const serverChannel = postgresChannel(this.#schema, channel);
    this.#channels.set(serverChannel, channel);
    this.#listeners.add(channel, entry);
    try {
      const client = await this.#connection();
      // Idempotent: the connection may have LISTENed already while connecting.
      await client.query(`LISTEN ${serverChannel}`);
    } catch (error) {
      await this.#unlisten(channel, entry);
      throw mapPostgresError(error);
    }
    let listening = true;
    return async () => {
      if (!listening) return;
      listening = false;
      await this.#unlisten(channel, entry);
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    await this.#disconnect();
  }

  async #unlisten(channel: string, entry: NotificationListener): Promise<void> {
    if (!this.#listeners.remove(channel, entry)) return;
    const serverChannel = postgresChannel(this.#schema, channel);
    this.#channels.delete(serverChannel);
    if (this.#listeners.channels().length === 0) {
      await this.#disconnect();
      return;
    }
    // A dropped connection has no LISTEN to undo; the next one will not LISTEN this channel.
    await this.#client?.query(`UNLISTEN ${serverChannel}`).catch(() => undefined);
  }

  /** The listening connection, connecting (and LISTENing every channel) if there is none. */
  #connection(): Promise<pg.Client> {
    if (this.#client !== undefined) return Promise.resolve(this.#client);
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #connect(): Promise<pg.Client> {
    // The pool's Client class, when it has one (several hosts: it finds the writable one).
    const Client = (this.#config as { Client?: typeof pg.Client }).Client ?? pg.Client;
    const client = new Client(this.#config);
    const dropped = () => this.#dropped(client);
    client.on('error', dropped);
    client.on('end', dropped);
    client.on('notification', (message) => {
      const channel = this.#channels.get(message.channel);
      // An empty payload is never sent (notify refuses it): it would read as "maybe missed".
      if (channel !== undefined && message.payload) this.#listeners.emit(channel, message.payload);
    });
    try {
      await client.connect();
      for (const serverChannel of this.#channels.keys()) await client.query(`LISTEN ${serverChannel}`);
    } catch (error) {
      client.removeListener('end', dropped);
      await client.end().catch(() => undefined);
      throw error;
    }
    if (this.#closed) {
      await client.end().catch(() => undefined);
      throw new ClosedError('The PostgreSQL store is closed');
    }
    this.#client = client;
    return client;
  }

  #dropped(client: pg.Client): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    client.end().catch(() => undefined);
    if (!this.#closed && this.#listeners.channels().length > 0) this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#reconnect !== undefined) return;
    const delayMs = Math.min(
      maxReconnectDelayMs,
      firstReconnectDelayMs * 2 ** Math.min(this.#failedReconnects, 16),
    );
    this.#reconnect = this.#timers.setTimeout(() => {
      this.#reconnect = undefined;
      if (this.#closed || this.#listeners.channels().length === 0) return;
      this.#connection().then(
        () => {
          this.#failedReconnects = 0;
          this.#listeners.emitAll(notificationsMayBeMissed);
        },
        () => {
          this.#failedReconnects++;
          this.#scheduleReconnect();
        },
      );
    }, delayMs);
    this.#reconnect.unref?.();
  }

  async #disconnect(): Promise<void> {
    this.#reconnect?.cancel();
    this.#reconnect = undefined;
    const client = this.#client ?? (await this.#connecting?.catch(() => undefined));
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }
}
