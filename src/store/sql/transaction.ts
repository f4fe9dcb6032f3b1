import type { StoreTransaction } from '../types.ts';
import type { SqlSession } from './connection.ts';
import { SqlEntityStore } from './entities.ts';
import { SqlIdempotencyStore } from './idempotency.ts';
import { SqlInboxStore } from './inbox.ts';
import { SqlOutboxStore } from './outbox.ts';
import { SqlSagaStore } from './sagas.ts';
import { SqlTimerStore } from './timers.ts';

/** The six sub-stores of one transaction, all writing through its session. */
export function createStoreTransaction(session: SqlSession): StoreTransaction {
  return {
    entities: new SqlEntityStore(session),
    sagas: new SqlSagaStore(session),
    timers: new SqlTimerStore(session),
    inbox: new SqlInboxStore(session),
    outbox: new SqlOutboxStore(session),
    idempotency: new SqlIdempotencyStore(session),
  };
}
