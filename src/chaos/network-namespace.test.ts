// A node's network namespace as a cluster run makes it, against the machine's real PostgreSQL: from
// inside, 127.0.0.1:<port> reaches the real server over the bridge; a cut makes its answers stop
// (no reset: a partition, not a refusal) while HTTP into the namespace still flows; a heal
// lets it through again. Needs root, ip, tc and socat (skipped, with the reason, otherwise).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { loopbackPorts, NodeNamespace, namespacesUnavailable } from './network-namespace.ts';
import { freePort } from './runner.ts';

const run = promisify(execFile);
const unavailable = namespacesUnavailable();
const pgUrl = process.env.MERIDIAN_TEST_PG_URL;
const pgPort = pgUrl === undefined ? undefined : loopbackPorts([/@([^/]+)\//.exec(pgUrl)?.[1] ?? ''])?.[0];

/**
 * From inside the namespace, asks the PostgreSQL server behind 127.0.0.1:`port` whether it speaks
 * SSL (an 8-byte SSLRequest, answered with one byte): 'answered', or 'timeout' after `ms`. The
 * local end of the bridge accepts the connection either way; only the answer crosses the veth.
 */
async function askFrom(namespace: string, port: number, ms: number): Promise<string> {
  const script = `const s = require('node:net').connect(${port}, '127.0.0.1', () => s.write(Buffer.from([0, 0, 0, 8, 4, 210, 22, 47])));
    setTimeout(() => { console.log('timeout'); process.exit(0); }, ${ms});
    s.on('data', () => { console.log('answered'); process.exit(0); });
    s.on('error', (e) => { console.log(e.code); process.exit(0); });`;
  const { stdout } = await run('ip', ['netns', 'exec', namespace, process.execPath, '-e', script], {
    timeout: ms + 10_000,
  });
  return stdout.trim();
}

describe.skipIf(unavailable !== undefined || pgPort === undefined)(
  `a node's network namespace${unavailable === undefined ? '' : ` (skipped: ${unavailable})`}`,
  () => {
    let namespace: NodeNamespace | undefined;
    const children: ChildProcess[] = [];
    afterAll(async () => {
      for (const child of children) child.kill('SIGKILL');
      await namespace?.destroy();
    });

    it('bridges the dependency port, cuts it silently while HTTP flows, and heals', async () => {
      const httpPort = await freePort();
      namespace = await NodeNamespace.create(Math.floor(Math.random() * 256), 7, httpPort, [pgPort!]);
      // The node's HTTP server inside the namespace: a one-line server on its own 127.0.0.1.
      const server = spawn(
        'ip',
        [
          ...['netns', 'exec', namespace.name, process.execPath, '-e'],
          `require('node:http').createServer((q, r) => r.end('inside')).listen(${httpPort}, '127.0.0.1')`,
        ],
        { stdio: 'ignore' },
      );
      children.push(server);
      const get = async () => {
        for (let attempt = 0; attempt < 100; attempt++) {
          try {
            return await (
              await fetch(`http://127.0.0.1:${httpPort}/`, { signal: AbortSignal.timeout(2000) })
            ).text();
          } catch {
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        }
        return 'unreachable';
      };
      expect(await askFrom(namespace.name, pgPort!, 5000)).toBe('answered');
      expect(await get()).toBe('inside');
      await namespace.cut();
      expect(await askFrom(namespace.name, pgPort!, 1500)).toBe('timeout');
      expect(await get()).toBe('inside');
      await namespace.heal();
      expect(await askFrom(namespace.name, pgPort!, 5000)).toBe('answered');
      await namespace.destroy();
      namespace = undefined;
      const { stdout } = await run('ip', ['netns', 'list']);
      expect(stdout).not.toContain(`n7`);
    }, 60_000);
  },
);
