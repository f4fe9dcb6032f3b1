// `meridian cancel` asks a running node to cancel a saga: a waiting saga ends cancelled (and the
// node's metrics count it so), asking again is a no-op and says so, an ended saga is refused
// (exit 1, the node's 409), and bad options are exit 2 with the usage.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineApp } from '../app/app.ts';
import { saga } from '../runtime/definitions.ts';
import { startTestApp, type TestApp } from '../testing/index.ts';
import { run } from './cancel.ts';
import { captureOutput } from './output.fixture.ts';

const Approval = saga('CliApproval', async (ctx) => ctx.waitForSignal('approve', { timeoutMs: 3_600_000 }));

describe('meridian cancel', () => {
  let running: TestApp;
  let token: string;

  beforeAll(async () => {
    running = await startTestApp(defineApp({ name: 'cancel-shop', definitions: [Approval] }));
    token = await running.devAuth!.issue('ops', 'operator');
  });

  afterAll(async () => {
    await running?.destroy();
  });

  it('cancels a waiting saga, and says a second cancellation was a no-op', async () => {
    const handle = await running.runtime.startSaga(Approval, 'a-1', undefined);
    const first = captureOutput();
    const node = ['--url', running.url, '--token', token];
    expect(await run(['a-1', '--reason', 'no longer wanted', ...node], first.output)).toBe(0);
    expect(first.out).toEqual(['a-1\trequested']);
    await expect(handle.result()).rejects.toMatchObject({ status: 'cancelled' });
    expect((await running.runtime.saga('a-1'))?.reason).toBe("Saga 'a-1' was cancelled: no longer wanted");
    // Counted in the node's metrics under its own outcome.
    const metrics = await fetch(`${running.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    expect(await metrics.text()).toMatch(/saga_duration_seconds_count\{[^}]*outcome="cancelled"[^}]*\} 1/);
    const again = captureOutput();
    expect(await run(['a-1', ...node, '--json'], again.output)).toBe(0);
    expect(JSON.parse(again.out.join('\n'))).toEqual({ id: 'a-1', cancellation: 'duplicate' });
  });

  it('reports a saga that ended otherwise (exit 1) and bad options (exit 2)', async () => {
    const handle = await running.runtime.startSaga(Approval, 'a-2', undefined);
    await running.runtime.signal('a-2', 'approve', true);
    await handle.result();
    const ended = captureOutput();
    expect(await run(['a-2', '--url', running.url, '--token', token], ended.output)).toBe(1);
    expect(ended.err[0]).toMatch(/answered 409: Saga 'a-2' has ended \(completed\)/);
    const missing = captureOutput();
    expect(await run(['nobody', '--url', running.url, '--token', token], missing.output)).toBe(1);
    expect(missing.err[0]).toContain('answered 404');
    const bad = captureOutput();
    expect(await run([], bad.output)).toBe(2);
    expect(bad.err[0]).toContain('needs a saga id');
    const long = captureOutput();
    expect(await run(['a-2', '--reason', 'x'.repeat(501)], long.output)).toBe(2);
    expect(long.err[0]).toContain('--reason must be 1 to 500 characters');
  });
});
