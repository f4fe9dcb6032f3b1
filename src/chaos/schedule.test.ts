// The fault schedule is a pure function of the seed and the duration, within the run, with only
// the kinds allowed, and different seeds give different schedules.
import { describe, expect, it } from 'vitest';
import { drawSchedule, selectFaults } from './schedule.ts';

describe('drawSchedule', () => {
  const kinds = ['kill', 'dependency', 'duplicate', 'reorder'] as const;

  it('gives the same schedule for the same seed, and another for another seed', () => {
    const one = drawSchedule({ seed: 42, durationMs: 20_000, kinds });
    expect(drawSchedule({ seed: 42, durationMs: 20_000, kinds })).toEqual(one);
    expect(drawSchedule({ seed: 43, durationMs: 20_000, kinds })).not.toEqual(one);
  });

  it('keeps every fault inside the run, in time order, of the allowed kinds only', () => {
    for (let seed = 0; seed < 50; seed++) {
      const faults = drawSchedule({ seed, durationMs: 12_000, kinds: ['kill', 'reorder'] });
      expect(faults.filter((fault) => fault.kind === 'kill')).toHaveLength(3);
      expect(new Set(faults.map((fault) => fault.kind))).toEqual(new Set(['kill', 'reorder']));
      for (const fault of faults) {
        expect(fault.atMs).toBeGreaterThanOrEqual(0);
        expect('untilMs' in fault ? fault.untilMs : fault.atMs).toBeLessThanOrEqual(12_000);
      }
      expect(faults.map((fault) => fault.atMs)).toEqual(
        faults.map((fault) => fault.atMs).sort((a, b) => a - b),
      );
    }
  });

  it('on a cluster: kills name a node, pauses outlast the session timeout, broker losses only with brokers to lose', () => {
    const cluster = { nodes: 3, sessionTimeoutMs: 6000, brokers: 3 };
    const clusterKinds = ['kill', 'reorder', 'pause', 'broker'] as const;
    const nodes = new Set<number>();
    for (let seed = 0; seed < 50; seed++) {
      const faults = drawSchedule({ seed, durationMs: 60_000, kinds: clusterKinds, cluster });
      expect(drawSchedule({ seed, durationMs: 60_000, kinds: clusterKinds, cluster })).toEqual(faults);
      const kills = faults.filter((fault) => fault.kind === 'kill');
      expect(kills).toHaveLength(6);
      for (const fault of faults) {
        expect('untilMs' in fault ? fault.untilMs : fault.atMs).toBeLessThanOrEqual(60_000);
        if (fault.kind === 'kill' || fault.kind === 'pause') {
          expect(fault.node).toBeGreaterThanOrEqual(0);
          expect(fault.node).toBeLessThan(3);
          nodes.add(fault.node!);
        }
        if (fault.kind === 'pause') expect(fault.untilMs - fault.atMs).toBeGreaterThan(6000);
        if (fault.kind === 'broker') expect([1, 2, 3]).toContain(fault.broker);
      }
      const windows = (kind: string) =>
        faults.filter((fault) => fault.kind === kind) as Array<{ atMs: number; untilMs: number }>;
      for (const kind of ['pause', 'broker']) {
        const list = windows(kind);
        expect(list).toHaveLength(3);
        // One at a time: each ends before the next begins.
        for (let i = 1; i < list.length; i++)
          expect(list[i]!.atMs).toBeGreaterThanOrEqual(list[i - 1]!.untilMs);
      }
      const none = drawSchedule({
        seed,
        durationMs: 60_000,
        kinds: clusterKinds,
        cluster: { ...cluster, brokers: 0 },
      });
      expect(none.some((fault) => fault.kind === 'broker')).toBe(false);
    }
    expect(nodes).toEqual(new Set([0, 1, 2]));
    // A single process's kills name no node.
    const single = drawSchedule({ seed: 1, durationMs: 20_000, kinds: ['kill'] });
    expect(single.every((fault) => fault.kind === 'kill' && fault.node === undefined)).toBe(true);
  });

  it('keeps only the selected faults of a schedule (a shrunk run), and refuses an index past its end', () => {
    const all = drawSchedule({ seed: 5, durationMs: 12_000, kinds });
    expect(selectFaults(all, undefined)).toEqual(all);
    expect(selectFaults(all, [])).toEqual([]);
    expect(selectFaults(all, [0, 2])).toEqual([all[0], all[2]]);
    expect(() => selectFaults(all, [all.length])).toThrow(
      `'--faults' names fault ${all.length}, but this seed and duration schedule ${all.length} faults`,
    );
  });
});
