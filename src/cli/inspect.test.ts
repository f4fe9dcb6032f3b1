// `meridian inspect` asks a running node what an operator asks, as text or --json: its sagas, one
// saga's calls and trace, topics and lag, dead letters; bad options and a refused token are clear
// errors with their exit codes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineApp } from '../app/app.ts';
import { entity, saga } from '../runtime/definitions.ts';
import { startTestApp, type TestApp } from '../testing/index.ts';
import { run } from './inspect.ts';
import { captureOutput } from './output.fixture.ts';

const Stock = entity('InspectStock', {
  initial: { available: 2 },
  commands: {
    reserve: (state: { available: number }) => ({ state: { available: state.available - 1 }, events: [{}] }),
  },
});
const Order = saga('InspectOrder', async (ctx) => {
  await ctx.send(Stock, 'sku-1', 'reserve', {});
  return ctx.step('charge', async () => 'ok');
});

describe('meridian inspect', () => {
  let running: TestApp;
  let token: string;

  beforeAll(async () => {
    running = await startTestApp(defineApp({ name: 'inspect-shop', definitions: [Stock, Order] }));
    token = await running.devAuth!.issue('ops', 'operator');
    await (await running.runtime.startSaga(Order, 'order-9', {})).result();
  });

  afterAll(async () => {
    await running?.destroy();
  });

  it('lists sagas and shows one saga’s calls, as text and as JSON', async () => {
    const sagas = captureOutput();
    expect(await run(['sagas', '--url', running.url, '--token', token], sagas.output)).toBe(0);
    expect(sagas.out[0]).toBe('id\ttype\tstatus\treason');
    expect(sagas.out).toContain('order-9\tInspectOrder\tcompleted\t');
    const one = captureOutput();
    expect(await run(['saga', 'order-9', '--url', running.url, '--token', token, '--json'], one.output)).toBe(
      0,
    );
    const body = JSON.parse(one.out.join('\n'));
    expect(body.progress.status).toBe('completed');
    expect(body.progress.calls.map((call: { kind: string }) => call.kind)).toEqual(['send', 'step']);
    expect(body.traceId).toMatch(/^[0-9a-f]{32}$/);
  });

  it('shows topics with their end offsets', async () => {
    const topics = captureOutput();
    expect(await run(['topics', '--url', running.url, '--token', token], topics.output)).toBe(0);
    expect(topics.out.some((line) => line.startsWith('InspectStock.events\t'))).toBe(true);
  });

  it('refuses bad options (exit 2) and reports a refused token (exit 1), naming what to do', async () => {
    const bad = captureOutput();
    expect(await run(['everything'], bad.output)).toBe(2);
    expect(bad.err[0]).toContain('one of sagas, saga, topics, lag, dead-letters');
    const refused = captureOutput();
    expect(await run(['sagas', '--url', running.url, '--token', 'not-a-token'], refused.output)).toBe(1);
    expect(refused.err[0]).toContain('answered 401');
  });
});
