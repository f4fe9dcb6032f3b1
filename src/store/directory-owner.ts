/**
 * One owner per data directory, visibly. An embedded node writes `owner.json` (its pid, host,
 * command and start time) into its data directory before it opens anything there. A second
 * process finds it and refuses with an error naming the first, unless told to take over; the
 * process taken over notices (it watches the file) and is told so, to exit with a clear message
 * instead of lingering unready. The store's own fencing still guards the data; this makes the
 * contest visible to the people running the processes.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, unlinkSync, unwatchFile, watchFile, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { MeridianError } from '../errors.ts';
import { systemClock } from '../time.ts';

export const OWNER_FILE = 'owner.json';

/** Who holds a data directory. */
export interface DirectoryOwnerInfo {
  readonly pid: number;
  readonly host: string;
  readonly command: string;
  /** ISO 8601. */
  readonly startedAt: string;
  /** Tells this holder's file from a later one's, even when a pid is reused. */
  readonly token: string;
}

/** The data directory is held by another live process. */
export class DirectoryInUseError extends MeridianError {
  readonly owner: DirectoryOwnerInfo;

  constructor(directory: string, owner: DirectoryOwnerInfo) {
    super(
      'DIRECTORY_IN_USE',
      `The data directory ${directory} is in use by process ${owner.pid} on ${owner.host} (${owner.command.slice(0, 120)}, started ${owner.startedAt}). Stop that process first, or start this one with --take-over to take the directory over (the other process then exits).`,
      { details: { directory, pid: owner.pid, host: owner.host } },
    );
    this.owner = owner;
  }
}

export interface DirectoryOwnership {
  readonly info: DirectoryOwnerInfo;
  /** The holder this process replaced with `takeOver`, if it replaced a live one. */
  readonly tookOverFrom: DirectoryOwnerInfo | undefined;
  /** Stops watching and removes the file, if it is still this process's. */
  release(): void;
}

export interface ClaimOptions {
  /** Replace a live holder instead of refusing. @default false */
  takeOver?: boolean;
  /** Called once when another process took the directory over (with its info). */
  onTakenOver?: (by: DirectoryOwnerInfo) => void;
  /** How often the file is checked for a takeover (ms). Range [50, 60000]. @default 1000 */
  watchIntervalMs?: number;
}

function readOwner(path: string): DirectoryOwnerInfo | undefined {
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<DirectoryOwnerInfo>;
    if (typeof parsed.pid !== 'number' || typeof parsed.token !== 'string') return undefined;
    return parsed as DirectoryOwnerInfo;
  } catch {
    return undefined;
  }
}

/** Whether the holder is a live process on this host (a file left by a killed process is not). */
function alive(owner: DirectoryOwnerInfo): boolean {
  if (owner.host !== hostname()) return true;
  if (owner.pid === process.pid) return false;
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Claims `directory` for this process (see the module comment). Throws DirectoryInUseError when
 * a live process holds it and `takeOver` is not set.
 */
export function claimDirectory(directory: string, options: ClaimOptions = {}): DirectoryOwnership {
  const path = join(directory, OWNER_FILE);
  const intervalMs = options.watchIntervalMs ?? 1000;
  if (!Number.isInteger(intervalMs) || intervalMs < 50 || intervalMs > 60_000) {
    throw new RangeError(
      `'watchIntervalMs' must be an integer in [50, 60000]: current value is ${intervalMs}`,
    );
  }
  const held = readOwner(path);
  const live = held !== undefined && alive(held);
  if (live && options.takeOver !== true) throw new DirectoryInUseError(directory, held);
  const info: DirectoryOwnerInfo = {
    pid: process.pid,
    host: hostname(),
    command: process.argv.slice(1).join(' ').slice(0, 500),
    startedAt: new Date(systemClock.now()).toISOString(),
    token: randomBytes(12).toString('hex'),
  };
  // Written whole and renamed into place: a reader never sees half a file.
  const temporary = `${path}.${info.token}`;
  writeFileSync(temporary, `${JSON.stringify(info)}\n`, { mode: 0o644 });
  renameSync(temporary, path);
  // Two processes that both found the directory free: the last rename wins, the other refuses.
  const winner = readOwner(path);
  if (winner?.token !== info.token && winner !== undefined) throw new DirectoryInUseError(directory, winner);

  let released = false;
  const check = () => {
    if (released) return;
    const now = readOwner(path);
    if (now === undefined || now.token === info.token) return;
    released = true;
    unwatchFile(path, check);
    options.onTakenOver?.(now);
  };
  watchFile(path, { interval: intervalMs, persistent: false }, check);
  return {
    info,
    tookOverFrom: live ? held : undefined,
    release() {
      if (released) return;
      released = true;
      unwatchFile(path, check);
      if (readOwner(path)?.token === info.token) {
        try {
          unlinkSync(path);
        } catch {
          // Gone already: nothing to release.
        }
      }
    },
  };
}
