import { describe, expect, it } from 'vitest';
import { ManualClock } from '../time.ts';
import { DeadlineEntry, DeadlineQueue } from './deadline-queue.ts';

class Recorded extends DeadlineEntry {
  readonly name: string;
  readonly log: string[];
  readonly onExpire: (() => void) | undefined;
  constructor(name: string, log: string[], onExpire?: () => void) {
    super();
    this.name = name;
    this.log = log;
    this.onExpire = onExpire;
  }
  expire(): void {
    this.log.push(this.name);
    this.onExpire?.();
  }
}

describe('DeadlineQueue', () => {
  it('expires each entry exactly at its deadline with a single timer pending', () => {
    const clock = new ManualClock();
    const queue = new DeadlineQueue(100, clock, clock);
    const log: string[] = [];
    queue.add(new Recorded('a', log));
    clock.advance(30);
    queue.add(new Recorded('b', log));
    expect(clock.pendingTimers).toBe(1);
    clock.advance(69);
    expect(log).toEqual([]);
    clock.advance(1);
    expect(log).toEqual(['a']);
    clock.advance(29);
    expect(log).toEqual(['a']);
    clock.advance(1);
    expect(log).toEqual(['a', 'b']);
    expect(queue.size).toBe(0);
  });

  it('never expires a removed entry, and re-arms for the entries behind it', () => {
    const clock = new ManualClock();
    const queue = new DeadlineQueue(100, clock, clock);
    const log: string[] = [];
    const first = new Recorded('first', log);
    queue.add(first);
    clock.advance(50);
    queue.add(new Recorded('second', log));
    queue.remove(first);
    queue.remove(first);
    clock.advance(50);
    expect(log).toEqual([]);
    clock.advance(50);
    expect(log).toEqual(['second']);
  });

  it('arms for the head, not the newcomer, when an expiring entry adds another', () => {
    const clock = new ManualClock();
    const queue = new DeadlineQueue(100, clock, clock);
    const log: string[] = [];
    queue.add(new Recorded('a', log, () => queue.add(new Recorded('a-again', log))));
    clock.advance(10);
    queue.add(new Recorded('b', log));
    clock.advance(90);
    expect(log).toEqual(['a']);
    clock.advance(10);
    expect(log).toEqual(['a', 'b']);
    clock.advance(90);
    expect(log).toEqual(['a', 'b', 'a-again']);
  });

  it('stops its timer after firing on an empty list', () => {
    const clock = new ManualClock();
    const queue = new DeadlineQueue(100, clock, clock);
    const entry = new Recorded('x', []);
    queue.add(entry);
    queue.remove(entry);
    clock.advance(100);
    expect(clock.pendingTimers).toBe(0);
  });
});
