import { describe, expect, it } from 'vitest';
import { CallContext } from './context.ts';

describe('CallContext', () => {
  it('creates no signal until the operation reads one, and a late read sees an earlier abort', () => {
    const child = CallContext.root.child();
    child.abort('deadline');
    expect(child.aborted).toBe(true);
    const signal = child.signal;
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBe('deadline');
  });

  it('aborts a child when the caller signal fires, and stops listening once released', () => {
    const caller = new AbortController();
    const child = CallContext.fromSignal(caller.signal).child();
    const signal = child.signal;
    caller.abort('caller gave up');
    expect(signal.aborted).toBe(true);
    expect(child.reason).toBe('caller gave up');

    const other = new AbortController();
    const released = CallContext.fromSignal(other.signal).child();
    const releasedSignal = released.signal;
    released.release();
    other.abort('too late');
    expect(releasedSignal.aborted).toBe(false);
  });

  it('reports an abort of an ancestor without creating any signal', () => {
    const caller = new AbortController();
    const grandchild = CallContext.fromSignal(caller.signal).child().withAttempt(3).child();
    expect(grandchild.attempt).toBe(3);
    expect(grandchild.aborted).toBe(false);
    caller.abort('stop');
    expect(grandchild.aborted).toBe(true);
    expect(grandchild.reason).toBe('stop');
  });

  it('propagates an abort from a lazily created parent signal to a child read earlier', () => {
    const parent = CallContext.root.child();
    const child = parent.child();
    const childSignal = child.signal;
    parent.abort('timeout');
    expect(childSignal.aborted).toBe(true);
    expect(childSignal.reason).toBe('timeout');
  });

  it('refuses to abort a context that does not own its cancellation', () => {
    expect(() => CallContext.root.abort('x')).toThrow('only a child context can be aborted');
  });
});
