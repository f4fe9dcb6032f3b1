/**
 * The app under verification as a real process: started from the spec's command, waited for
 * until it prints its ready line, killed with SIGKILL and started again on the same data
 * directory and port. A restart may skew the process's wall clock (a preload that shifts
 * `Date.now`); the data directory may sit on a small filesystem of the run's own, mounted in a
 * private mount namespace that a holder process keeps alive across the app's restarts.
 */

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { extname, join } from 'node:path';
import { MeridianError } from '../errors.ts';
import { systemClock, systemTimers } from '../time.ts';
import type { AppHandle, ProcessCommand, VerifySpec } from './spec.ts';

/** The preload that shifts the process's clock, as a file beside this one (.ts in source, .js built). */
const clockSkewModule = join(import.meta.dirname, `clock-skew${extname(import.meta.filename)}`);
/** The environment variable the preload reads. */
export const clockSkewVariable = 'MERIDIAN_VERIFY_CLOCK_SKEW_MS';
/** How long the app may take to print its ready line. */
const readyTimeoutMs = 120_000;
/** The output kept per process, the most recent. */
const maxOutputChars = 64 * 1024;

export class AppProcess implements AppHandle {
  readonly url: string;
  ready: Record<string, string> = {};
  readonly #spec: VerifySpec<unknown>;
  readonly #command: ProcessCommand;
  readonly #filesystem: SmallFilesystem | undefined;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #output = '';

  constructor(
    spec: VerifySpec<unknown>,
    command: ProcessCommand,
    port: number,
    filesystem?: SmallFilesystem,
  ) {
    this.#spec = spec;
    this.#command = command;
    this.#filesystem = filesystem;
    this.url = `http://127.0.0.1:${port}`;
  }

  /** Whether the current process is alive. */
  get running(): boolean {
    const child = this.#child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  output(): string {
    return this.#output;
  }

  /** Starts the process (its clock shifted by `skewMs`) and resolves once it is ready. */
  async start(skewMs = 0): Promise<void> {
    const command = this.#command;
    const env: Record<string, string | undefined> = { ...process.env, ...command.env };
    if (skewMs !== 0) {
      env[clockSkewVariable] = String(skewMs);
      env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} --import=${clockSkewModule}`.trim();
    }
    const [file, args] =
      this.#filesystem === undefined
        ? [command.command, [...command.args]]
        : [
            'nsenter',
            ['-t', String(this.#filesystem.holderPid), '-m', '--', command.command, ...command.args],
          ];
    this.#output = '';
    const child = spawn(file, args, { cwd: command.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const append = (chunk: Buffer) => {
      this.#output = (this.#output + chunk.toString()).slice(-maxOutputChars);
    };
    child.stdout!.on('data', append);
    child.stderr!.on('data', append);
    await this.#waitReady(child);
  }

  async #waitReady(child: ChildProcess): Promise<void> {
    let exited = false;
    void this.#exited.then(() => (exited = true));
    const deadline = systemClock.monotonicNow() + readyTimeoutMs;
    for (;;) {
      const match = this.#spec.ready.exec(this.#output);
      if (match !== null) {
        this.ready = { ...match.groups, url: match[1] ?? this.url };
        return;
      }
      if (exited || systemClock.monotonicNow() > deadline) {
        if (!exited) child.kill('SIGKILL');
        throw new MeridianError(
          'UNAVAILABLE',
          `The app did not print a line matching ${this.#spec.ready} ${exited ? `before it exited (code ${child.exitCode})` : `within ${readyTimeoutMs} ms`}; its output:\n${this.#output.slice(-2000)}`,
        );
      }
      await new Promise<void>((resolve) => systemTimers.setTimeout(resolve, 20));
    }
  }

  /** SIGKILL, and wait until the process is gone. */
  async kill(): Promise<void> {
    this.#child?.kill('SIGKILL');
    await this.#exited;
  }

  /** SIGSTOP: the process freezes, its connections stay open and it holds on to what it owns. */
  pause(): void {
    if (this.running) this.#child!.kill('SIGSTOP');
  }

  /** SIGCONT: a paused process goes on where it stopped (harmless on one that runs). */
  resume(): void {
    if (this.running) this.#child!.kill('SIGCONT');
  }

  /** SIGTERM (the app drains), SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    const child = this.#child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    // A paused process would hold the SIGTERM until it ran again.
    child.kill('SIGCONT');
    const timer = systemTimers.setTimeout(() => child.kill('SIGKILL'), graceMs);
    await this.#exited;
    timer.cancel();
  }
}

/**
 * A tmpfs of `sizeMb` mounted on `directory` in a private mount namespace, kept alive by a
 * holder process; the app runs in that namespace through `nsenter`, and the runner reaches the
 * files through `/proc/<holder>/root`. Nothing is mounted in the machine's own namespace, and the
 * mount disappears with the holder.
 */
export class SmallFilesystem {
  readonly holderPid: number;
  readonly #holder: ChildProcess;
  readonly #filler: string;

  private constructor(holder: ChildProcess, directory: string) {
    this.#holder = holder;
    this.holderPid = holder.pid!;
    this.#filler = join(`/proc/${holder.pid}/root`, directory, '.meridian-verify-filler');
  }

  /** Why small filesystems cannot be made here, or undefined when they can. */
  static unavailable(): string | undefined {
    const probe = spawnSync(
      'unshare',
      ['-m', '--propagation', 'private', '--', 'sh', '-c', 'mount -t tmpfs -o size=1m tmpfs /mnt'],
      {
        encoding: 'utf8',
        timeout: 10_000,
      },
    );
    return probe.status === 0
      ? undefined
      : `mounting a small filesystem is not allowed here (unshare -m + mount tmpfs: ${(probe.stderr || probe.error?.message || '').trim().slice(0, 120)})`;
  }

  static async create(directory: string, sizeMb: number): Promise<SmallFilesystem> {
    mkdirSync(directory, { recursive: true });
    const holder = spawn(
      'unshare',
      [
        '-m',
        '--propagation',
        'private',
        '--',
        'sh',
        '-c',
        `mount -t tmpfs -o size=${sizeMb}m tmpfs "$0" && echo MOUNTED && exec sleep 86400`,
        directory,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    holder.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    holder.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    for (let waited = 0; !output.includes('MOUNTED'); waited += 20) {
      if (holder.exitCode !== null || waited > 10_000) {
        holder.kill('SIGKILL');
        throw new MeridianError(
          'UNAVAILABLE',
          `Could not mount a ${sizeMb} MB filesystem on ${directory}: ${output.slice(0, 300)}`,
        );
      }
      await new Promise<void>((resolve) => systemTimers.setTimeout(resolve, 20));
    }
    return new SmallFilesystem(holder, directory);
  }

  /** Writes a file until the filesystem is full; returns the bytes written. */
  fill(): number {
    const fd = openSync(this.#filler, 'w');
    const chunk = Buffer.alloc(256 * 1024, 1);
    let written = 0;
    try {
      for (;;) written += writeSync(fd, chunk);
    } catch {
      // ENOSPC: full, which is the point.
    } finally {
      closeSync(fd);
    }
    return written;
  }

  free(): void {
    try {
      unlinkSync(this.#filler);
    } catch {
      // Not filled: nothing to free.
    }
  }

  destroy(): void {
    this.#holder.kill('SIGKILL');
  }
}

/** Removes a run's directory, retrying while a killed process still lets go of its files. */
export function removeRunDirectory(directory: string): void {
  rmSync(directory, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
}
