// Banking case study under load: starts `banking` (policies off, then on) as a child
// process, drives GET /mobile/balance/{id} at a fixed open-loop rate, and slows auth to 2 s in
// the middle, then makes half its calls fail, then restores it. Prints one line per mode and phase: p50/p99/max latency (from each request's
// scheduled send time, so a stalled server cannot hide its queue), errors, degraded share, and
// when readiness went false and came back.
//   node bench/banking.ts [ratePerSecond=200] [phaseSeconds=6]
import { type ChildProcess, spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import { build, type Histogram } from 'hdr-histogram-js';

const ratePerSecond = Number(process.argv[2] ?? 200);
const phaseSeconds = Number(process.argv[3] ?? 6);
const CUSTOMERS = 200;
/** The mobile app gives up after this long: the request counts as an error. */
const CLIENT_TIMEOUT_MS = 5000;
const SLOW_AUTH_MS = 2000;

interface PhaseStats {
  histogram: Histogram;
  sent: number;
  ok: number;
  degraded: number;
  errors: Map<string, number>;
}

const newStats = (): PhaseStats => ({
  histogram: build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3, autoResize: true }),
  sent: 0,
  ok: 0,
  degraded: 0,
  errors: new Map(),
});

function startServer(policies: boolean): Promise<{ child: ChildProcess; url: string; key: string }> {
  const child = spawn(
    process.execPath,
    ['apps/banking/main.ts', '--port', '0', '--policies', policies ? 'on' : 'off'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return new Promise((resolve, reject) => {
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(output);
      const key = /operator API key \(this run only\): (\S+)/.exec(output);
      if (match !== null && key !== null) resolve({ child, url: match[1]!, key: key[1]! });
    });
    child.once('exit', (code) => reject(new Error(`banking server exited with ${code}`)));
  });
}

const agent = new Agent({ keepAlive: true, maxSockets: 2048 });

function call(
  url: string,
  method: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent, timeout: CLIENT_TIMEOUT_MS }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

async function setAuth(base: string, key: string, latencyMs: number, failureRate = 0): Promise<void> {
  await call(
    `${base}/admin/auth`,
    'PUT',
    { 'content-type': 'application/json', 'x-api-key': key },
    JSON.stringify({ latencyMs, failureRate }),
  );
}

async function runMode(policies: boolean): Promise<string[]> {
  const { child, url, key } = await startServer(policies);
  const phases = ['healthy', `auth ${SLOW_AUTH_MS} ms`, 'auth fails 50%', 'auth restored'] as const;
  const stats = phases.map(newStats);
  const readiness: string[] = [];
  let phase = 0;
  let phaseStartedMs = performance.now();
  let lastReady: boolean | undefined;
  const pending = new Set<Promise<void>>();

  const readinessPoll = setInterval(() => {
    call(`${url}/readyz`, 'GET', {})
      .then(({ status }) => {
        const ready = status === 200;
        if (ready !== lastReady && lastReady !== undefined) {
          const at = ((performance.now() - phaseStartedMs) / 1000).toFixed(1);
          readiness.push(`${ready ? 'ready' : 'not ready'} ${at} s into '${phases[phase]}'`);
        }
        lastReady = ready;
      })
      .catch(() => {});
  }, 100);

  const fire = (dueMs: number, customer: number) => {
    const current = stats[phase]!;
    current.sent++;
    const done = call(`${url}/mobile/balance/acc-${customer}`, 'GET', {
      authorization: `token-cust-${customer}`,
    })
      .then(({ status, text }) => {
        current.histogram.recordValue(Math.max(1, Math.round((performance.now() - dueMs) * 1000)));
        if (status === 200) {
          current.ok++;
          if (text.includes('"degraded":true')) current.degraded++;
        } else current.errors.set(String(status), (current.errors.get(String(status)) ?? 0) + 1);
      })
      .catch((error: Error) => {
        current.histogram.recordValue(Math.max(1, Math.round((performance.now() - dueMs) * 1000)));
        current.errors.set(error.message, (current.errors.get(error.message) ?? 0) + 1);
      })
      .finally(() => pending.delete(done));
    pending.add(done);
  };

  const intervalMs = 1000 / ratePerSecond;
  let sequence = 0;
  for (phase = 0; phase < phases.length; phase++) {
    if (phase === 1) await setAuth(url, key, SLOW_AUTH_MS);
    if (phase === 2) await setAuth(url, key, 2, 0.5);
    if (phase === 3) await setAuth(url, key, 2);
    phaseStartedMs = performance.now();
    const endMs = phaseStartedMs + phaseSeconds * 1000;
    let nextMs = phaseStartedMs;
    while (nextMs < endMs) {
      const now = performance.now();
      while (nextMs <= now && nextMs < endMs) {
        fire(nextMs, sequence++ % CUSTOMERS);
        nextMs += intervalMs;
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
  phase = phases.length - 1;
  await Promise.all(pending);
  clearInterval(readinessPoll);
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));

  const ms = (us: number) => `${(us / 1000).toFixed(1)} ms`;
  const lines = stats.map((s, index) => {
    const h = s.histogram;
    const p = (q: number) => ms(Math.min(h.getValueAtPercentile(q), h.maxValue));
    const errors = [...s.errors].map(([kind, n]) => `${kind}×${n}`).join(' ') || 'none';
    const degradedShare = s.sent === 0 ? 0 : (100 * s.degraded) / s.sent;
    return `policies ${policies ? 'on ' : 'off'} | ${phases[index]!.padEnd(14)} | n=${s.sent} p50 ${p(50)} p99 ${p(99)} max ${ms(h.maxValue)} | errors ${(s.sent === 0 ? 0 : (100 * (s.sent - s.ok)) / s.sent).toFixed(1)}% (${errors}) | degraded ${degradedShare.toFixed(1)}%`;
  });
  lines.push(
    `policies ${policies ? 'on ' : 'off'} | readiness: ${readiness.join('; ') || 'ready throughout'}`,
  );
  return lines;
}

console.log(
  `banking bench: ${ratePerSecond} req/s open loop, ${phaseSeconds} s per phase, ${CUSTOMERS} sessions, client timeout ${CLIENT_TIMEOUT_MS} ms`,
);
for (const policies of [false, true]) {
  for (const line of await runMode(policies)) console.log(line);
}
agent.destroy();
