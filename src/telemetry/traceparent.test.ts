// Every record carries a W3C traceparent: these tests pin the header's format and how child
// spans keep the trace id while taking a new span id from the Random port.
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../time.ts';
import { childTraceparent, formatTraceparent, newTrace, parseTraceparent } from './traceparent.ts';

describe('trace context', () => {
  it('formats and parses a W3C traceparent', () => {
    const header = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const parsed = parseTraceparent(header);
    expect(parsed).toEqual({
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      sampled: true,
    });
    expect(formatTraceparent(parsed!)).toBe(header);
  });

  it('rejects malformed headers and all-zero ids, as the spec says', () => {
    for (const header of [
      undefined,
      '',
      'garbage',
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01',
    ]) {
      expect(parseTraceparent(header)).toBeNull();
    }
  });

  it('makes a child span in the same trace, and a new trace when there is no valid parent', () => {
    const random = seededRandom(3);
    const parent = formatTraceparent(newTrace(random));
    const child = parseTraceparent(childTraceparent(parent, random))!;
    expect(child.traceId).toBe(parseTraceparent(parent)!.traceId);
    expect(child.spanId).not.toBe(parseTraceparent(parent)!.spanId);
    const orphan = parseTraceparent(childTraceparent('not-a-header', random))!;
    expect(orphan.traceId).toMatch(/^[0-9a-f]{32}$/);
  });

  it('derives ids from the Random port only: the same seed gives the same ids', () => {
    expect(formatTraceparent(newTrace(seededRandom(9)))).toBe(formatTraceparent(newTrace(seededRandom(9))));
  });
});
