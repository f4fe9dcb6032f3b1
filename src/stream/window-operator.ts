import { assert } from '../assert.ts';
import type { Json } from '../store/types.ts';
import type { Aggregator } from './aggregators.ts';
import { MinHeap } from './min-heap.ts';
import { decodeTime, encodeTime, noWatermark } from './watermarks.ts';
import { assignWindows, type Window, type WindowAssigner } from './windows.ts';

/** What a window emits when it fires, and again (`update: true`) for each late record it takes. */
export interface WindowResult<R> {
  readonly key: string;
  readonly window: Window;
  readonly value: R;
  /** True when a record within the allowed lateness changed a window that had fired already. */
  readonly update: boolean;
}

interface OpenWindow {
  readonly startMs: number;
  readonly endMs: number;
  acc: Json;
  fired: boolean;
}

export interface WindowOperatorOptions<T, A extends Json, R> {
  readonly assigner: WindowAssigner;
  readonly aggregator: Aggregator<T, A, R>;
  readonly allowedLatenessMs: number;
  readonly emit: (result: WindowResult<R>) => void;
  readonly late: (value: T, timestampMs: number) => void;
}

/** One open window as a snapshot stores it: key, start, end, fired, accumulator. */
type WindowEntry = [string, number, number, boolean, Json];

/**
 * Keyed windows with an incremental aggregate each. A window fires once the watermark reaches its
 * last instant (`endMs - 1`) and is freed once the watermark passes that plus the allowed
 * lateness; until then a late record updates it and it fires again with `update: true`. A record
 * whose every window is already past its lateness is late: it goes to `late`, never dropped.
 *
 * Timers are per instant, not per window: aligned windows of every key share their end, so one
 * heap entry fires all of them, in the order their keys first opened a window due then (input
 * order, so the output is a function of the input alone).
 */
export class WindowOperator<T, A extends Json, R> {
  readonly #assigner: WindowAssigner;
  readonly #aggregator: Aggregator<T, A, R>;
  readonly #latenessMs: number;
  readonly #emit: (result: WindowResult<R>) => void;
  readonly #late: (value: T, timestampMs: number) => void;
  readonly #keys = new Map<string, OpenWindow[]>();
  /** Instant -> keys with a window that fires (not yet fired) or is freed (fired) at it. */
  readonly #timers = new Map<number, string[]>();
  readonly #heap = new MinHeap();
  #watermarkMs = noWatermark;
  #openWindows = 0;
  #lateRecords = 0;

  constructor(options: WindowOperatorOptions<T, A, R>) {
    this.#assigner = options.assigner;
    this.#aggregator = options.aggregator;
    this.#latenessMs = options.allowedLatenessMs;
    this.#emit = options.emit;
    this.#late = options.late;
  }

  /** Windows holding state now (fired ones included until their lateness passes). */
  get openWindows(): number {
    return this.#openWindows;
  }

  get lateRecords(): number {
    return this.#lateRecords;
  }

  /** The earliest instant at which advancing the watermark would fire or free something. */
  get nextTimerMs(): number {
    return this.#heap.peek();
  }

  add(key: string, value: T, timestampMs: number, sequence: number): void {
    if (this.#assigner.kind === 'session') {
      this.#addToSession(key, value, timestampMs, sequence);
      return;
    }
    if (this.#assigner.kind === 'tumbling') {
      // The common case without allocating the windows' array.
      const sizeMs = this.#assigner.sizeMs;
      const startMs = timestampMs - (((timestampMs % sizeMs) + sizeMs) % sizeMs);
      if (!this.#addTo(key, startMs, startMs + sizeMs, value, timestampMs, sequence))
        this.#lateRecord(value, timestampMs);
      return;
    }
    let onTime = false;
    for (const window of assignWindows(this.#assigner, timestampMs)) {
      if (this.#addTo(key, window.startMs, window.endMs, value, timestampMs, sequence)) onTime = true;
    }
    if (!onTime) this.#lateRecord(value, timestampMs);
  }

  /** Adds to the window `[startMs, endMs)` of `key`; false when that window is past its lateness. */
  #addTo(
    key: string,
    startMs: number,
    endMs: number,
    value: T,
    timestampMs: number,
    sequence: number,
  ): boolean {
    if (endMs - 1 + this.#latenessMs <= this.#watermarkMs) return false;
    let windows = this.#keys.get(key);
    if (windows === undefined) {
      windows = [];
      this.#keys.set(key, windows);
    }
    let open: OpenWindow | undefined;
    for (const candidate of windows) {
      if (candidate.startMs === startMs) {
        open = candidate;
        break;
      }
    }
    if (open === undefined) {
      open = { startMs, endMs, acc: this.#aggregator.create(), fired: false };
      windows.push(open);
      this.#openWindows++;
      this.#schedule(endMs - 1, key);
    }
    open.acc = this.#aggregator.add(open.acc as A, value, timestampMs, sequence);
    if (open.fired) this.#fire(key, open, true);
    return true;
  }

  #addToSession(key: string, value: T, timestampMs: number, sequence: number): void {
    assert(this.#assigner.kind === 'session', 'session windows');
    const merge = this.#aggregator.merge;
    assert(merge !== undefined, 'session windows have an aggregator with merge (checked when defined)');
    let startMs = timestampMs;
    let endMs = timestampMs + this.#assigner.gapMs;
    const windows = this.#keys.get(key) ?? [];
    // Flink's rule: windows that touch or overlap merge into one spanning them all.
    const touching = windows.filter((window) => window.startMs <= endMs && window.endMs >= startMs);
    for (const window of touching) {
      startMs = Math.min(startMs, window.startMs);
      endMs = Math.max(endMs, window.endMs);
    }
    if (endMs - 1 + this.#latenessMs <= this.#watermarkMs) {
      this.#lateRecord(value, timestampMs);
      return;
    }
    let acc = this.#aggregator.create() as Json;
    for (const window of touching) acc = merge(acc as A, window.acc as A);
    acc = this.#aggregator.add(acc as A, value, timestampMs, sequence);
    const kept = windows.filter((window) => !touching.includes(window));
    const merged: OpenWindow = { startMs, endMs, acc, fired: false };
    kept.push(merged);
    this.#keys.set(key, kept);
    this.#openWindows += 1 - touching.length;
    if (endMs - 1 <= this.#watermarkMs) {
      // Merged into a window whose end the watermark passed (within lateness): an update now.
      this.#fire(
        key,
        merged,
        touching.some((window) => window.fired),
      );
      this.#schedule(endMs - 1 + this.#latenessMs, key);
    } else {
      this.#schedule(endMs - 1, key);
    }
  }

  #lateRecord(value: T, timestampMs: number): void {
    this.#lateRecords++;
    this.#late(value, timestampMs);
  }

  #schedule(instantMs: number, key: string): void {
    const keys = this.#timers.get(instantMs);
    if (keys === undefined) {
      this.#timers.set(instantMs, [key]);
      this.#heap.push(instantMs);
    } else {
      keys.push(key);
    }
  }

  #fire(key: string, window: OpenWindow, update: boolean): void {
    window.fired = true;
    const result = this.#aggregator.result(window.acc as A, { startMs: window.startMs, endMs: window.endMs });
    this.#emit({ key, window: { startMs: window.startMs, endMs: window.endMs }, value: result, update });
  }

  /** Moves the watermark to `watermarkMs` (never back), firing and freeing windows on the way. */
  advance(watermarkMs: number): void {
    if (watermarkMs <= this.#watermarkMs) return;
    this.#watermarkMs = watermarkMs;
    while (this.#heap.size > 0 && this.#heap.peek() <= watermarkMs) {
      const instantMs = this.#heap.pop();
      const keys = this.#timers.get(instantMs);
      this.#timers.delete(instantMs);
      if (keys === undefined) continue;
      for (const key of keys) this.#due(key, instantMs);
    }
  }

  /** Fires the windows of `key` due at `instantMs` and frees those whose lateness ended then. */
  #due(key: string, instantMs: number): void {
    const windows = this.#keys.get(key);
    if (windows === undefined) return;
    let kept = 0;
    for (const window of windows) {
      let keep = true;
      if (!window.fired && window.endMs - 1 === instantMs) {
        this.#fire(key, window, false);
        if (this.#latenessMs === 0) keep = false;
        else this.#schedule(instantMs + this.#latenessMs, key);
      } else if (window.fired && window.endMs - 1 + this.#latenessMs === instantMs) {
        keep = false;
      }
      if (keep) windows[kept++] = window;
      else this.#openWindows--;
    }
    windows.length = kept;
    if (kept === 0) this.#keys.delete(key);
  }

  /** The open windows in timer order, so a restore re-creates the same firing order. */
  snapshot(): Json {
    const entries: WindowEntry[] = [];
    const seen = new Set<OpenWindow>();
    const instants = [...this.#timers.keys()].sort((a, b) => a - b);
    for (const instantMs of instants) {
      for (const key of this.#timers.get(instantMs)!) {
        for (const window of this.#keys.get(key) ?? []) {
          if (seen.has(window) || this.#pendingAt(window) !== instantMs) continue;
          seen.add(window);
          entries.push([key, window.startMs, window.endMs, window.fired, window.acc]);
        }
      }
    }
    assert(entries.length === this.#openWindows, 'every open window has exactly one pending timer');
    return { watermarkMs: encodeTime(this.#watermarkMs), lateRecords: this.#lateRecords, windows: entries };
  }

  restore(snapshot: Json): void {
    const value = snapshot as { watermarkMs: number | string; lateRecords: number; windows: WindowEntry[] };
    this.#watermarkMs = decodeTime(value.watermarkMs);
    this.#lateRecords = value.lateRecords;
    for (const [key, startMs, endMs, fired, acc] of value.windows) {
      const window: OpenWindow = { startMs, endMs, fired, acc };
      const windows = this.#keys.get(key);
      if (windows === undefined) this.#keys.set(key, [window]);
      else windows.push(window);
      this.#openWindows++;
      this.#schedule(this.#pendingAt(window), key);
    }
  }

  /** The instant a window waits for: its firing, or once fired, the end of its lateness. */
  #pendingAt(window: OpenWindow): number {
    return window.fired ? window.endMs - 1 + this.#latenessMs : window.endMs - 1;
  }
}
