// The per-key linearizability checker on hand-made histories: orders that real time allows are
// found, stale and impossible reads are caught with the operations involved, indeterminate
// writes may or may not have happened, failed ones never did, and keys are checked apart.
import { describe, expect, it } from 'vitest';
import { History, type OperationRequest } from './history.ts';
import { checkLinearizable, registerModel } from './linearizability.ts';

/** Builds a history from steps: `['invoke', worker, request]` or `['ok'|'info'|'fail', worker, output?]`. */
function historyOf(
  steps: Array<['invoke', number, OperationRequest] | ['ok' | 'info' | 'fail', number, unknown?]>,
) {
  const history = new History(() => 0);
  const open = new Map<number, ReturnType<History['invoke']>>();
  for (const [type, worker, value] of steps) {
    if (type === 'invoke') open.set(worker, history.invoke(worker, value as OperationRequest));
    else
      history.complete(open.get(worker)!, {
        status: type,
        ...(value === undefined ? {} : { output: value }),
      });
  }
  return history.operations;
}

const write = (value: number): OperationRequest => ({ kind: 'write', key: 'x', input: { value } });
const read: OperationRequest = { kind: 'read', key: 'x' };

describe('checkLinearizable', () => {
  it('accepts a read that overlaps a write seeing either value', () => {
    const operations = historyOf([
      ['invoke', 0, write(1)],
      ['invoke', 1, read],
      ['invoke', 2, read],
      ['ok', 2, 0],
      ['ok', 1, 1],
      ['ok', 0],
    ]);
    expect(checkLinearizable(operations, registerModel(0))).toEqual([
      { key: 'x', outcome: 'linearizable', operations: 3 },
    ]);
  });

  it('catches a stale read after a completed write, naming the operations', () => {
    const operations = historyOf([
      ['invoke', 0, write(1)],
      ['ok', 0],
      ['invoke', 1, read],
      ['ok', 1, 0],
    ]);
    const [result] = checkLinearizable(operations, registerModel(0));
    expect(result).toMatchObject({ key: 'x', outcome: 'violation' });
    expect(result!.outcome === 'violation' && result!.operations).toEqual([0, 1]);
  });

  it('lets an indeterminate write take effect or not, and ignores a failed one', () => {
    const took = historyOf([
      ['invoke', 0, write(5)],
      ['info', 0],
      ['invoke', 1, read],
      ['ok', 1, 5],
    ]);
    const didNot = historyOf([
      ['invoke', 0, write(5)],
      ['info', 0],
      ['invoke', 1, read],
      ['ok', 1, 0],
    ]);
    const failed = historyOf([
      ['invoke', 0, write(5)],
      ['fail', 0],
      ['invoke', 1, read],
      ['ok', 1, 5],
    ]);
    expect(checkLinearizable(took, registerModel(0))[0]!.outcome).toBe('linearizable');
    expect(checkLinearizable(didNot, registerModel(0))[0]!.outcome).toBe('linearizable');
    expect(checkLinearizable(failed, registerModel(0))[0]!.outcome).toBe('violation');
  });

  it('checks each key by itself', () => {
    const operations = historyOf([
      ['invoke', 0, { kind: 'write', key: 'a', input: { value: 1 } }],
      ['ok', 0],
      ['invoke', 1, { kind: 'read', key: 'b' }],
      ['ok', 1, 0],
    ]);
    expect(checkLinearizable(operations, registerModel(0)).map((result) => result.outcome)).toEqual([
      'linearizable',
      'linearizable',
    ]);
  });

  it('gives up with unknown rather than searching without bound', () => {
    const steps: Array<['invoke', number, OperationRequest] | ['ok', number, unknown?]> = [];
    for (let worker = 0; worker < 12; worker++) steps.push(['invoke', worker, write(worker)]);
    for (let worker = 0; worker < 12; worker++) steps.push(['ok', worker]);
    steps.push(['invoke', 99, read], ['ok', 99, -1]);
    const [result] = checkLinearizable(historyOf(steps), registerModel(0), { maxStates: 50 });
    expect(result!.outcome).toBe('unknown');
  });
});
