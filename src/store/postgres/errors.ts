import { ConflictError, isMeridianError, MeridianError, RetryableError } from '../../errors.ts';
import { fencedSqlState } from '../sql/partitions.ts';

/**
 * SQLSTATEs that mean "lost a race": retrying the transaction can succeed.
 * 40001 serialization_failure, 40P01 deadlock_detected, 23505 unique_violation (a concurrent
 * insert of the same key), 55P03 lock_not_available.
 */
const conflictCodes = new Set(['40001', '40P01', '23505', '55P03']);

/** A pg error as a Meridian error where one fits; anything else passes through unchanged. */
export function mapPostgresError(error: unknown): unknown {
  if (isMeridianError(error)) return error;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return error;
  const message = (error as Error).message;
  if (conflictCodes.has(code)) {
    return new ConflictError(`PostgreSQL transaction lost a race (${code}: ${message}): retry it`, {
      cause: error,
      details: { sqlState: code },
    });
  }
  // Class 08 (connection exception), 25006 (a standby refused a write) and 57P01-57P03 (server
  // shutting down, crash recovery):
  // the transaction did not commit (unless this was its COMMIT), and a retry may reach a server.
  if (code.startsWith('08') || code === '25006' || code === '57P01' || code === '57P02' || code === '57P03') {
    return new RetryableError(`PostgreSQL is unavailable (${code}: ${message})`, {
      cause: error,
      details: { sqlState: code },
    });
  }
  if (code === fencedSqlState) {
    return new MeridianError('FENCED', message, { cause: error, details: { sqlState: code } });
  }
  if (code === '57014') {
    return new MeridianError('TIMEOUT', `PostgreSQL statement timed out (${message})`, {
      cause: error,
      details: { sqlState: code },
    });
  }
  return error;
}
