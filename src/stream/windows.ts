import { integerOption, invalidOption } from '../resilience/options.ts';

/** A window of time: `[startMs, endMs)`. Its last instant, `endMs - 1`, is when it fires. */
export interface Window {
  readonly startMs: number;
  readonly endMs: number;
}

/** Which clock a window measures: the records' event time, or the processor's Clock. */
export type TimeDomain = 'event' | 'processing';

/**
 * Decides which windows a record belongs to. Tumbling and sliding windows are aligned to the
 * epoch (a 5 s window starts at a multiple of 5000 ms); session windows start at a record and
 * merge while records arrive closer than the gap.
 */
export type WindowAssigner =
  | { readonly kind: 'tumbling'; readonly time: TimeDomain; readonly sizeMs: number }
  | { readonly kind: 'sliding'; readonly time: TimeDomain; readonly sizeMs: number; readonly slideMs: number }
  | { readonly kind: 'session'; readonly time: TimeDomain; readonly gapMs: number };

/** Windows longer than a year are a mistake: their state could never be freed. */
const maxWindowMs = 366 * 86_400_000;
/** A sliding window belongs to at most this many windows at once (sizeMs / slideMs). */
export const maxWindowsPerRecord = 1000;

function time(value: TimeDomain | undefined): TimeDomain {
  const actual = value ?? 'event';
  if (actual !== 'event' && actual !== 'processing') invalidOption('time', "'event' or 'processing'", actual);
  return actual;
}

/** Fixed-size, non-overlapping windows: `[k * sizeMs, (k + 1) * sizeMs)`. */
export function tumbling(options: { sizeMs: number; time?: TimeDomain }): WindowAssigner {
  const sizeMs = integerOption('sizeMs', options.sizeMs, 0, 1, maxWindowMs);
  return { kind: 'tumbling', time: time(options.time), sizeMs };
}

/**
 * Windows of `sizeMs` starting every `slideMs` (a 60 s moving window sliding every 5 s): a record
 * belongs to `sizeMs / slideMs` of them. `sizeMs` must be a multiple of `slideMs`.
 */
export function sliding(options: { sizeMs: number; slideMs: number; time?: TimeDomain }): WindowAssigner {
  const sizeMs = integerOption('sizeMs', options.sizeMs, 0, 1, maxWindowMs);
  const slideMs = integerOption('slideMs', options.slideMs, 0, 1, sizeMs);
  if (sizeMs % slideMs !== 0) invalidOption('sizeMs', `a multiple of 'slideMs' (${slideMs})`, sizeMs);
  if (sizeMs / slideMs > maxWindowsPerRecord) {
    invalidOption(
      'slideMs',
      `at least sizeMs / ${maxWindowsPerRecord} (${Math.ceil(sizeMs / maxWindowsPerRecord)})`,
      slideMs,
    );
  }
  return { kind: 'sliding', time: time(options.time), sizeMs, slideMs };
}

/** Per-key windows that stay open while records arrive less than `gapMs` apart. */
export function session(options: { gapMs: number; time?: TimeDomain }): WindowAssigner {
  const gapMs = integerOption('gapMs', options.gapMs, 0, 1, maxWindowMs);
  return { kind: 'session', time: time(options.time), gapMs };
}

/** The start of the aligned window of `sizeMs` (stepping by `stepMs`) that holds `timestampMs`. */
function alignedStart(timestampMs: number, stepMs: number): number {
  return timestampMs - (((timestampMs % stepMs) + stepMs) % stepMs);
}

/**
 * The windows a record at `timestampMs` belongs to, earliest start first. Session windows give the
 * record's own `[t, t + gap)`, which the operator then merges with the key's overlapping ones.
 */
export function assignWindows(assigner: WindowAssigner, timestampMs: number): Window[] {
  switch (assigner.kind) {
    case 'tumbling': {
      const startMs = alignedStart(timestampMs, assigner.sizeMs);
      return [{ startMs, endMs: startMs + assigner.sizeMs }];
    }
    case 'sliding': {
      const windows: Window[] = [];
      const lastStartMs = alignedStart(timestampMs, assigner.slideMs);
      for (
        let startMs = lastStartMs - assigner.sizeMs + assigner.slideMs;
        startMs <= lastStartMs;
        startMs += assigner.slideMs
      ) {
        windows.push({ startMs, endMs: startMs + assigner.sizeMs });
      }
      return windows;
    }
    case 'session':
      return [{ startMs: timestampMs, endMs: timestampMs + assigner.gapMs }];
  }
}
