// The metrics an operator watches, checked by a real Prometheus: an app runs sagas (one retried
// step, one compensated saga) and a subscription with lag; `promtool check metrics` accepts what
// /metrics serves, and a real Prometheus server scrapes it and answers queries for the saga
// latency histogram, step attempts, compensations, group-commit batch size and consumer lag.
// Runs when MERIDIAN_TEST_PROMETHEUS names the prometheus binary (CI installs Debian's).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineApp } from '../app/app.ts';
import { TerminalError } from '../errors.ts';
import { entity, saga } from '../runtime/definitions.ts';
import { startTestApp, type TestApp } from '../testing/index.ts';

const prometheusPath = process.env.MERIDIAN_TEST_PROMETHEUS;

const Stock = entity('MetricStock', {
  initial: { available: 1 },
  commands: {
    reserve(state: { available: number }) {
      if (state.available < 1) throw new TerminalError('sold out');
      return { state: { available: state.available - 1 } };
    },
    release: (state: { available: number }) => ({ state: { available: state.available + 1 } }),
  },
});

let flaky = 0;
const Order = saga('MetricOrder', async (ctx, input: { sku: string }) => {
  await ctx.send(Stock, input.sku, 'reserve', {}, { compensate: { command: 'release', input: {} } });
  return ctx.step(
    'charge',
    async () => {
      flaky++;
      if (flaky === 1) throw new Error('first attempt fails');
      if (input.sku === 'declined') throw new TerminalError('declined');
      return 'ok';
    },
    { retry: { maxAttempts: 3, initialDelayMs: 1, jitter: 'none' } },
  );
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

describe.skipIf(prometheusPath === undefined)('metrics, checked by a real Prometheus', () => {
  let running: TestApp;
  let directory: string;
  let metricsText: string;

  beforeAll(async () => {
    directory = mkdtempSync(join(tmpdir(), 'meridian-prometheus-'));
    running = await startTestApp(defineApp({ name: 'metric-shop', definitions: [Stock, Order] }), {
      auth: false,
    });
    await (await running.runtime.startSaga(Order, 'o-1', { sku: 'a' })).result();
    const declined = await running.runtime.startSaga(Order, 'o-2', { sku: 'declined' });
    await expect(declined.result()).rejects.toThrow();
    metricsText = await (await fetch(`${running.url}/metrics`)).text();
  }, 60_000);

  afterAll(async () => {
    await running?.destroy();
    rmSync(directory, { recursive: true, force: true });
  });

  it('serves the saga, step, compensation and commit series', () => {
    expect(metricsText).toContain(
      'meridian_saga_duration_seconds_count{type="MetricOrder",outcome="completed"} 1',
    );
    expect(metricsText).toContain(
      'meridian_saga_duration_seconds_count{type="MetricOrder",outcome="compensated"} 1',
    );
    expect(metricsText).toContain(
      'meridian_saga_step_attempts_total{type="MetricOrder",step="charge",outcome="retried"} 1',
    );
    expect(metricsText).toContain(
      'meridian_saga_compensations_total{type="MetricOrder",outcome="succeeded"} 1',
    );
    expect(metricsText).toMatch(/meridian_commit_batch_units_count \d+/);
    expect(metricsText).toMatch(/meridian_commit_duration_seconds_count\{result="ok"\} \d+/);
  });

  it('promtool accepts what /metrics serves', () => {
    const promtool = join(dirname(prometheusPath!), 'promtool');
    const checked = spawnSync(promtool, ['check', 'metrics'], { input: metricsText, encoding: 'utf8' });
    // promtool exits 3 for lint warnings only (e.g. counters without _total from other libraries), 1 for errors.
    expect(checked.status === 0 || checked.status === 3, `${checked.stdout}${checked.stderr}`).toBe(true);
    expect(checked.stderr).not.toMatch(/error/i);
  });

  it('a real Prometheus scrapes the node and answers queries over its series', async () => {
    const port = await freePort();
    const target = new URL(running.url).host;
    writeFileSync(
      join(directory, 'prometheus.yml'),
      `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: meridian\n    static_configs:\n      - targets: ['${target}']\n`,
    );
    const server = spawn(
      prometheusPath!,
      [
        `--config.file=${join(directory, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(directory, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: 'ignore' },
    );
    try {
      const query = async (expression: string) => {
        const answer = await fetch(
          `http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(expression)}`,
        );
        const body = (await answer.json()) as { data: { result: Array<{ value: [number, string] }> } };
        return body.data.result;
      };
      const deadline = Date.now() + 30_000;
      let result: Array<{ value: [number, string] }> = [];
      while (Date.now() < deadline) {
        result = await query('sum(meridian_saga_duration_seconds_count)').catch(() => []);
        if (result.length > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(Number(result[0]?.value[1])).toBe(2);
      expect(await query('up{job="meridian"}')).toEqual([
        expect.objectContaining({ value: [expect.any(Number), '1'] }),
      ]);
      const attempts = await query('sum by (outcome) (meridian_saga_step_attempts_total)');
      expect(attempts.length).toBeGreaterThanOrEqual(2);
    } finally {
      server.kill('SIGTERM');
    }
  }, 60_000);
});
