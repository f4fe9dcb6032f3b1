import { describe, expect, it } from 'vitest';
import { Emitter } from './events.ts';

describe('Emitter', () => {
  it('delivers events to subscribers until their subscription is disposed', () => {
    const emitter = new Emitter<number>();
    const seen: number[] = [];
    const sub = emitter.subscribe((value) => seen.push(value));
    emitter.emit(1);
    sub.dispose();
    sub.dispose();
    emitter.emit(2);
    expect(seen).toEqual([1]);
    expect(emitter.hasListeners).toBe(false);
  });

  it('supports `using`, so a scope unsubscribes on exit', () => {
    const emitter = new Emitter<string>();
    const seen: string[] = [];
    {
      using _sub = emitter.subscribe((value) => seen.push(value));
      emitter.emit('inside');
    }
    emitter.emit('outside');
    expect(seen).toEqual(['inside']);
  });

  it('keeps delivering to the other listeners when one unsubscribes during an emit', () => {
    const emitter = new Emitter<number>();
    const seen: string[] = [];
    const first = emitter.subscribe(() => {
      seen.push('first');
      first.dispose();
    });
    emitter.subscribe(() => seen.push('second'));
    emitter.emit(1);
    emitter.emit(2);
    expect(seen).toEqual(['first', 'second', 'second']);
  });

  it('isolates a throwing listener from the emitter and the other listeners, and still reports it', async () => {
    const emitter = new Emitter<number>();
    const seen: number[] = [];
    emitter.subscribe(() => {
      throw new Error('broken metrics');
    });
    emitter.subscribe((value) => seen.push(value));
    const reported = new Promise<unknown>((resolve) => {
      const original = globalThis.queueMicrotask;
      globalThis.queueMicrotask = (callback) => {
        globalThis.queueMicrotask = original;
        try {
          callback();
        } catch (error) {
          resolve(error);
        }
      };
    });
    expect(() => emitter.emit(7)).not.toThrow();
    expect(seen).toEqual([7]);
    expect(await reported).toMatchObject({ message: 'broken metrics' });
  });
});
