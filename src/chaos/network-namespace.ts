/**
 * A cluster node in a network namespace of its own, so a run can cut it off PostgreSQL and Kafka
 * while its HTTP still flows: a network partition, not a refusal. The namespace is joined to the
 * machine's by a veth pair on 10.234.R.4N/30 (R drawn per run); socat bridges lead the node's
 * dependency ports on its own 127.0.0.1 over the veth to the real ones on the machine's 127.0.0.1,
 * and the node's HTTP port on the machine's 127.0.0.1 to the node. A cut drops the dependency
 * ports' packets on the veth, both ways and silently (tc's mirred redirects them to a veth left
 * down: no reset, no ICMP), so the node's connections hang as in a real partition; a heal deletes
 * the filters. Traffic stays on loopback and the run's own veths. Needs root, ip, tc and socat.
 */

import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { MeridianError } from '../errors.ts';
import type { ProcessCommand } from './spec.ts';

const run = promisify(execFile);
const tc = '/usr/sbin/tc';

/** Why namespaces cannot be made here, or undefined when they can. */
export function namespacesUnavailable(): string | undefined {
  if (process.getuid?.() !== 0)
    return `network namespaces need root (ip netns add); this run is uid ${process.getuid?.()}`;
  const tools = spawnSync('sh', ['-c', `command -v ip && command -v socat && test -x ${tc}`], {
    timeout: 5000,
  });
  if (tools.status !== 0) return 'ip, tc or socat is not installed (apt-get install -y iproute2 socat)';
  const probe = `mv-probe-${process.pid}`;
  const added = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8', timeout: 5000 });
  if (added.status !== 0)
    return `ip netns add is not allowed here: ${(added.stderr ?? '').trim().slice(0, 160)}`;
  spawnSync('ip', ['netns', 'del', probe], { timeout: 5000 });
  return undefined;
}

/** The loopback ports a node reaches its dependencies on, from `host:port` lists; undefined when one is not on loopback. */
export function loopbackPorts(endpoints: readonly string[]): number[] | undefined {
  const ports: number[] = [];
  for (const endpoint of endpoints) {
    const match = /^(127\.0\.0\.1|localhost):(\d{1,5})$/.exec(endpoint);
    if (match === null) return undefined;
    ports.push(Number(match[2]));
  }
  return [...new Set(ports)];
}

export class NodeNamespace {
  readonly name: string;
  readonly #device: string;
  readonly #rootIp: string;
  readonly #nodeIp: string;
  readonly #dependencyPorts: readonly number[];
  readonly #bridges: ChildProcess[] = [];

  private constructor(run: number, node: number, dependencyPorts: readonly number[]) {
    this.name = `mv${run.toString(16).padStart(2, '0')}n${node}`;
    this.#device = `${this.name}v`;
    this.#rootIp = `10.234.${run}.${4 * node + 1}`;
    this.#nodeIp = `10.234.${run}.${4 * node + 2}`;
    this.#dependencyPorts = dependencyPorts;
  }

  /** Makes node `node`'s namespace and bridges (`run`: 0..255, the run's own third octet). */
  static async create(
    run: number,
    node: number,
    httpPort: number,
    dependencyPorts: readonly number[],
  ): Promise<NodeNamespace> {
    const namespace = new NodeNamespace(run, node, dependencyPorts);
    try {
      await namespace.#up(httpPort);
    } catch (error) {
      await namespace.destroy();
      throw new MeridianError(
        'UNAVAILABLE',
        `Could not make network namespace ${namespace.name}: ${(error as Error).message.slice(0, 300)}`,
      );
    }
    return namespace;
  }

  async #up(httpPort: number): Promise<void> {
    const ns = this.name;
    const inside = `${this.#device}n`;
    await ip('netns', 'add', ns);
    await ip('link', 'add', this.#device, 'type', 'veth', 'peer', 'name', inside, 'netns', ns);
    await ip('addr', 'add', `${this.#rootIp}/30`, 'dev', this.#device);
    await ip('link', 'set', this.#device, 'up');
    await ip('-n', ns, 'addr', 'add', `${this.#nodeIp}/30`, 'dev', inside);
    await ip('-n', ns, 'link', 'set', inside, 'up');
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
    // Where a cut sends what it drops: a veth left down.
    await ip('-n', ns, 'link', 'add', 'mvhole', 'type', 'veth', 'peer', 'name', 'mvholep');
    for (const port of this.#dependencyPorts) {
      this.#bridge(undefined, this.#rootIp, port, '127.0.0.1');
      this.#bridge(ns, '127.0.0.1', port, this.#rootIp);
    }
    this.#bridge(ns, this.#nodeIp, httpPort, '127.0.0.1');
    this.#bridge(undefined, '127.0.0.1', httpPort, this.#nodeIp);
  }

  #bridge(ns: string | undefined, listen: string, port: number, target: string): void {
    const socat = ['socat', `TCP-LISTEN:${port},bind=${listen},reuseaddr,fork`, `TCP:${target}:${port}`];
    const [file, ...args] = ns === undefined ? socat : ['ip', 'netns', 'exec', ns, ...socat];
    const child = spawn(file!, args, { stdio: 'ignore' });
    this.#bridges.push(child);
  }

  /** The command run inside the namespace. */
  wrap(command: ProcessCommand): ProcessCommand {
    return {
      ...command,
      command: 'ip',
      args: ['netns', 'exec', this.name, command.command, ...command.args],
    };
  }

  /** Drops the node's PostgreSQL and Kafka packets both ways; its HTTP still flows. */
  async cut(): Promise<void> {
    const device = `${this.#device}n`;
    const inNs = (...args: string[]) =>
      run('ip', ['netns', 'exec', this.name, tc, ...args], { timeout: 10_000 });
    await inNs('qdisc', 'del', 'dev', device, 'clsact').catch(() => undefined);
    await inNs('qdisc', 'add', 'dev', device, 'clsact');
    // TCP to a dependency port (egress) and from it (ingress), redirected into the hole.
    const filter = (direction: 'egress' | 'ingress', field: 'dport' | 'sport', port: number) =>
      inNs(
        ...['filter', 'add', 'dev', device, direction, 'protocol', 'ip', 'prio', '1', 'u32'],
        ...['match', 'ip', 'protocol', '6', '0xff', 'match', 'ip', field, String(port), '0xffff'],
        ...['action', 'mirred', 'egress', 'redirect', 'dev', 'mvhole'],
      );
    for (const port of this.#dependencyPorts) {
      await filter('egress', 'dport', port);
      await filter('ingress', 'sport', port);
    }
  }

  /** Lets the packets through again. */
  async heal(): Promise<void> {
    await run('ip', ['netns', 'exec', this.name, tc, 'qdisc', 'del', 'dev', `${this.#device}n`, 'clsact'], {
      timeout: 10_000,
    }).catch(() => undefined);
  }

  /** Stops the bridges and deletes the namespace (its veths and filters go with it). */
  async destroy(): Promise<void> {
    for (const bridge of this.#bridges) bridge.kill('SIGKILL');
    await ip('netns', 'del', this.name).catch(() => undefined);
    await ip('link', 'del', this.#device).catch(() => undefined);
  }
}

async function ip(...args: string[]): Promise<void> {
  await run('ip', args, { timeout: 10_000 });
}
