// Issue 16: a full disk under the commerce server, on a real (small) filesystem the test mounts
// in a private mount namespace. While the store cannot write, /readyz says so and orders are
// refused with 503 (never 500); the fault is reported once; once space is freed the node is
// ready again and every order it accepted ends, without a restart, and the invariants hold.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { auditCommerce, collectAudit } from './invariants.ts';

/** Whether this machine lets the test mount a tmpfs of its own (root, or user namespaces). */
function mountsAllowed(): string | undefined {
  const probe = spawnSync(
    'unshare',
    [
      '-m',
      '--',
      'sh',
      '-c',
      'mount -t tmpfs -o size=1m tmpfs /mnt 2>/dev/null || mount -t tmpfs -o size=1m tmpfs "$0"',
      mkdtempSync(join(tmpdir(), 'meridian-mount-probe-')),
    ],
    {
      encoding: 'utf8',
    },
  );
  return probe.status === 0
    ? undefined
    : `mounting a small filesystem is not allowed here (unshare -m + mount tmpfs: ${(probe.stderr || probe.error?.message || '').trim().slice(0, 120)})`;
}

const skipReason = mountsAllowed();

interface Child {
  readonly process: ChildProcess;
  /** The next stdout line (JSON) that has `key`, waiting at most `timeoutMs`. */
  next(key: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  readonly problems: string[];
}

function startChild(dataDir: string): Child {
  const child = spawn(
    'unshare',
    [
      '-m',
      '--',
      'sh',
      '-c',
      'mount -t tmpfs -o size=12m tmpfs "$0" && exec "$1" "$2" "$0"',
      dataDir,
      process.execPath,
      join(import.meta.dirname, 'disk-fault-child.ts'),
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<() => void> = [];
  const problems: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if (typeof parsed.problem === 'string') problems.push(parsed.problem);
    lines.push(parsed);
    for (const wake of waiters.splice(0)) wake();
  });
  return {
    process: child,
    problems,
    async next(key, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const index = lines.findIndex((line) => key in line);
        if (index !== -1) return lines.splice(index, 1)[0]!;
        if (Date.now() > deadline) throw new Error(`the child printed no '${key}' within ${timeoutMs} ms`);
        await new Promise<void>((wake) => {
          waiters.push(wake);
          setTimeout(wake, 200);
        });
      }
    },
  };
}

describe.skipIf(skipReason !== undefined)('commerce on a full disk', () => {
  let child: Child | undefined;
  let dataDir: string | undefined;
  afterEach(() => {
    if (child?.process.exitCode === null) child.process.kill('SIGKILL');
    if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
  });

  it('turns not ready while it cannot write, refuses orders with 503, and recovers with every order ending once space is freed', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'meridian-disk-fault-'));
    child = startChild(dataDir);
    const { url, token } = (await child.next('url')) as { url: string; token: string };
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const call = async (method: string, path: string, body?: unknown, extra: Record<string, string> = {}) => {
      const response = await fetch(`${url}${path}`, {
        method,
        headers: { ...headers, ...extra },
        signal: AbortSignal.timeout(15_000),
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    expect((await call('PUT', '/inventory/disk-1', { available: 100_000, price: 1 })).status).toBe(200);
    expect((await call('GET', '/readyz')).status).toBe(200);

    let orders = 0;
    const accepted: string[] = [];
    const statuses = new Map<number, number>();
    const place = async () => {
      const placed = await call(
        'POST',
        '/orders',
        { customerId: `c${orders % 7}`, items: [{ sku: 'disk-1', qty: 1 }] },
        { 'idempotency-key': `disk-${orders++}` },
      );
      statuses.set(placed.status, (statuses.get(placed.status) ?? 0) + 1);
      if (placed.status === 202) accepted.push(placed.body.orderId as string);
      return placed;
    };
    for (let i = 0; i < 5; i++) expect((await place()).status).toBe(202);

    child.process.stdin!.write('fill\n');
    await child.next('filled');
    // Writes keep landing while SQLite reuses the space its WAL already has; orders go on
    // until a write needs a new block. From then on, readiness must say so.
    let notReady: { status: number; body: Record<string, unknown> } | undefined;
    for (let round = 0; round < 400 && notReady === undefined; round++) {
      await place();
      const ready = await call('GET', '/readyz');
      if (ready.status === 503) notReady = ready;
    }
    expect(notReady, 'readiness never failed on a full disk').toBeDefined();
    const storeCheck = (notReady!.body.checks as Record<string, { status: string; detail: string }>).store!;
    expect(storeCheck.status).toBe('fail');
    expect(storeCheck.detail).toMatch(/full/i);
    // An order refused now is refused with 503 and Retry-After, not a 500.
    const refused = await place();
    expect(refused.status).toBe(503);
    expect([...statuses.keys()].every((status) => status === 202 || status === 503)).toBe(true);

    child.process.stdin!.write('free\n');
    await child.next('freed');
    let ready = await call('GET', '/readyz');
    for (let round = 0; round < 50 && ready.status !== 200; round++) {
      await new Promise((done) => setTimeout(done, 100));
      ready = await call('GET', '/readyz');
    }
    expect(ready.status).toBe(200);
    expect((await place()).status).toBe(202);

    // Every accepted order ends without a restart (sagas parked by failed writes resume).
    let pending = Number.POSITIVE_INFINITY;
    for (const deadline = Date.now() + 30_000; pending > 0 && Date.now() < deadline; ) {
      pending = ((await call('GET', '/orders?status=pending&limit=1000')).body.orders as unknown[]).length;
      if (pending > 0) await new Promise((done) => setTimeout(done, 200));
    }
    expect(pending).toBe(0);
    const audit = await collectAudit(url, ['disk-1'], { authorization: headers.authorization });
    expect(auditCommerce({ ...audit, initialStock: { 'disk-1': 100_000 } }).violations).toEqual([]);
    for (const orderId of accepted)
      expect(audit.orders.some((order) => order.orderId === orderId)).toBe(true);

    // The fault was reported once, and its end once: not once per order it parked.
    expect(child.problems.filter((problem) => problem.startsWith('store writes are failing'))).toHaveLength(
      1,
    );
    expect(child.problems.filter((problem) => problem.startsWith('store writes succeed again'))).toHaveLength(
      1,
    );
    console.log(
      `disk fault: ${orders} orders, statuses ${JSON.stringify([...statuses])}, problems ${JSON.stringify(child.problems)}`,
    );
    child.process.stdin!.write('stop\n');
  }, 120_000);
});

describe.skipIf(skipReason === undefined)('commerce on a full disk (skipped)', () => {
  it.skip(`${skipReason}`, () => {});
});
