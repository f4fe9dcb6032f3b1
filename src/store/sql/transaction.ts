import { requireChannel, requireNotificationPayload } from '../limits.ts';
import type {
  EntityStore,
  IdempotencyStore,
  InboxStore,
  OutboxStore,
  PartitionStore,
  ReplyStore,
  SagaStore,
  StoreTransaction,
  TimerStore,
} from '../types.ts';
import type { SqlSession } from './connection.ts';
import { SqlEntityStore } from './entities.ts';
import { SqlIdempotencyStore } from './idempotency.ts';
import { SqlInboxStore } from './inbox.ts';
import { SqlOutboxStore } from './outbox.ts';
import { SqlPartitionStore } from './partitions.ts';
import { SqlReplyStore } from './replies.ts';
import { SqlSagaStore } from './sagas.ts';
import { SqlTimerStore } from './timers.ts';

/**
 * The sub-stores of one transaction, all writing through its session. Each is made on first
 * use: the runtime opens a savepoint per unit of work, and most units touch one or two of them.
 */
class SqlStoreTransaction implements StoreTransaction {
  readonly #session: SqlSession;
  #entities: EntityStore | undefined;
  #sagas: SagaStore | undefined;
  #timers: TimerStore | undefined;
  #inbox: InboxStore | undefined;
  #outbox: OutboxStore | undefined;
  #idempotency: IdempotencyStore | undefined;
  #partitions: PartitionStore | undefined;
  #replies: ReplyStore | undefined;

  constructor(session: SqlSession) {
    this.#session = session;
  }

  get entities(): EntityStore {
    this.#entities ??= new SqlEntityStore(this.#session);
    return this.#entities;
  }

  get sagas(): SagaStore {
    this.#sagas ??= new SqlSagaStore(this.#session);
    return this.#sagas;
  }

  get timers(): TimerStore {
    this.#timers ??= new SqlTimerStore(this.#session);
    return this.#timers;
  }

  get inbox(): InboxStore {
    this.#inbox ??= new SqlInboxStore(this.#session);
    return this.#inbox;
  }

  get outbox(): OutboxStore {
    this.#outbox ??= new SqlOutboxStore(this.#session);
    return this.#outbox;
  }

  get idempotency(): IdempotencyStore {
    this.#idempotency ??= new SqlIdempotencyStore(this.#session);
    return this.#idempotency;
  }

  get partitions(): PartitionStore {
    this.#partitions ??= new SqlPartitionStore(this.#session);
    return this.#partitions;
  }

  get replies(): ReplyStore {
    this.#replies ??= new SqlReplyStore(this.#session);
    return this.#replies;
  }

  async notify(channel: string, payload: string): Promise<void> {
    requireChannel('channel', channel);
    requireNotificationPayload('payload', payload);
    await this.#session.notify(channel, payload);
  }
}

export function createStoreTransaction(session: SqlSession): StoreTransaction {
  return new SqlStoreTransaction(session);
}
