/**
 * A cluster spec's run: `nodes` processes of the cluster shape over the run's own PostgreSQL
 * schema, Kafka work topic and group (fresh names, removed at the end). Operations go to the
 * running nodes, drawn from the worker's seeded source, frozen and cut-off ones included (their
 * requests hang, and may take effect late). Faults hit one node at a time — kill -9 and restart, a freeze
 * (SIGSTOP) past its session timeout then a thaw (SIGCONT), or a cut off PostgreSQL and Kafka
 * past it (each node in a network namespace of its own, network-namespace.ts) — or one Kafka
 * broker, through the broker control command the run was given.
 */

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MeridianError, ValidationError } from '../errors.ts';
import type { Random } from '../time.ts';
import { AppProcess } from './app-process.ts';
import type { Deployment } from './deployment.ts';
import { loopbackPorts, NodeNamespace, namespacesUnavailable } from './network-namespace.ts';
import type { Fault } from './schedule.ts';
import type { AppHandle, ClusterContext, VerifySpec } from './spec.ts';

const run = promisify(execFile);

/** Where a cluster run's shared services are (`meridian verify --pg … --kafka …`). */
export interface ClusterServices {
  /** PostgreSQL: the run makes a schema of its own there, and drops it at the end. */
  readonly pgUrl: string;
  /** Kafka bootstrap brokers, host:port,...; broker N of a broker fault is the Nth of them. */
  readonly kafkaBrokers: string;
  /**
   * A command that loses and brings back one broker: run as `<command> kill-node N` (SIGKILL)
   * and `<command> start-node N`, N from 1 to the number of brokers in `kafkaBrokers`
   * (`scripts/kafka/kafka.sh` on its cluster layout). Without it the schedule has no broker faults.
   */
  readonly brokerControl?: string;
}

/** Bound on one broker control command (a broker restart waits for it to be ready). */
const brokerControlTimeoutMs = 120_000;

/** Brokers a broker fault may hit: those of `--kafka`, when a control command was given. */
export function controllableBrokers(services: ClusterServices): number {
  return services.brokerControl === undefined ? 0 : services.kafkaBrokers.split(',').length;
}

/** The host:port of each PostgreSQL host and Kafka broker the nodes reach. */
function dependencyEndpoints(services: ClusterServices): string[] {
  const hosts = /^postgres(?:ql)?:\/\/(?:[^@/]*@)?([^/?]+)/.exec(services.pgUrl)?.[1] ?? '';
  const pg = hosts.split(',').map((host) => (/:\d+$/.test(host) ? host : `${host}:5432`));
  return [...pg, ...services.kafkaBrokers.split(',')];
}

/** Why partition faults cannot run here (no root, no tools, a dependency off loopback), or undefined. */
export function partitionsUnavailable(services: ClusterServices): string | undefined {
  if (loopbackPorts(dependencyEndpoints(services)) === undefined)
    return 'PostgreSQL and Kafka must be on 127.0.0.1 for the nodes to be bridged to them';
  return namespacesUnavailable();
}

/** Names for the run's schema, topic and group: its spec, its seed and a random suffix. */
export function clusterContext(
  spec: VerifySpec<unknown>,
  services: ClusterServices,
  seed: number,
): ClusterContext {
  if (!/^[A-Za-z0-9.-]+:\d{1,5}(?:,[A-Za-z0-9.-]+:\d{1,5})*$/.test(services.kafkaBrokers))
    throw new ValidationError(
      `'--kafka' must be host:port[,host:port...]: current value is '${services.kafkaBrokers.slice(0, 80)}'`,
    );
  // Unique per run, not drawn from the seed: a replay must not meet the state of the run it replays.
  const suffix = randomBytes(3).toString('hex');
  const base = `verify_${spec.name.replaceAll('-', '_').slice(0, 30)}_${seed}_${suffix}`;
  return {
    pgUrl: services.pgUrl,
    pgSchema: base.slice(0, 63),
    kafkaBrokers: services.kafkaBrokers,
    group: base.replaceAll('_', '-'),
    workTopic: `${base.replaceAll('_', '-')}-work`,
  };
}

export interface ClusterDeploymentOptions {
  readonly spec: VerifySpec<unknown>;
  readonly services: ClusterServices;
  readonly context: ClusterContext;
  readonly runDirectory: string;
  /** One HTTP port per node. */
  readonly ports: readonly number[];
  readonly seed: number;
  /** Whether each node runs in a network namespace of its own (for partition faults). */
  readonly namespaces: boolean;
}

export class ClusterDeployment implements Deployment {
  readonly nodes: readonly AppProcess[];
  readonly context: ClusterContext;
  readonly #services: ClusterServices;
  readonly #namespaces: readonly NodeNamespace[];
  /** Nodes frozen now, nodes cut off now, and nodes being started again (these take no operations). */
  readonly #paused = new Set<number>();
  readonly #cut = new Set<number>();
  readonly #restarting = new Set<number>();
  readonly #downBrokers = new Set<number>();

  private constructor(options: ClusterDeploymentOptions, namespaces: readonly NodeNamespace[]) {
    const { spec, context, runDirectory, seed } = options;
    this.#services = options.services;
    this.context = context;
    this.#namespaces = namespaces;
    this.nodes = options.ports.map((port, node) => {
      const dataDir = join(runDirectory, 'data', `node-${node}`);
      mkdirSync(dataDir, { recursive: true });
      const command = spec.start({ dataDir, port, seed, node, cluster: context });
      return new AppProcess(spec, namespaces[node]?.wrap(command) ?? command, port);
    });
  }

  /** The nodes' processes, each in a network namespace of its own when `namespaces` is set. */
  static async create(options: ClusterDeploymentOptions): Promise<ClusterDeployment> {
    const namespaces: NodeNamespace[] = [];
    if (options.namespaces) {
      const ports = loopbackPorts(dependencyEndpoints(options.services))!;
      // The run's own third octet of 10.234.0.0/16 (and namespace names): runs side by side do not meet.
      const run = randomBytes(1)[0]!;
      try {
        for (const [node, port] of options.ports.entries())
          namespaces.push(await NodeNamespace.create(run, node, port, ports));
      } catch (error) {
        for (const namespace of namespaces) await namespace.destroy();
        throw error;
      }
    }
    return new ClusterDeployment(options, namespaces);
  }

  get main(): AppHandle {
    return this.nodes[0]!;
  }

  /**
   * A running node, a frozen or cut-off one included: its requests hang and may take effect late,
   * after its partitions moved — the zombie writes the epoch fence must refuse. A node being
   * started again is left out (its port does not answer yet).
   */
  target(random: Random): AppHandle {
    const running = this.nodes.filter((node, index) => node.running && !this.#restarting.has(index));
    const from = running.length > 0 ? running : this.nodes;
    return from[Math.floor(random.next() * from.length)]!;
  }

  async start(): Promise<void> {
    // One after another: each joins the group and claims its partitions before the next comes.
    for (const node of this.nodes) await node.start();
  }

  async apply(fault: Fault, heal: boolean): Promise<string> {
    switch (fault.kind) {
      case 'kill':
        return this.#kill(fault.node ?? 0, fault.skewMs);
      case 'pause':
        return heal ? this.#thaw(fault.node) : this.#freeze(fault.node);
      case 'partition':
        return heal ? this.#join(fault.node) : this.#cutOff(fault.node);
      case 'broker':
        return this.#broker(fault.broker, heal ? 'start-node' : 'kill-node');
      default:
        throw new Error(`a cluster deployment applies no ${fault.kind} fault`);
    }
  }

  async #kill(index: number, skewMs: number): Promise<string> {
    const node = this.nodes[index]!;
    const before = node.pid;
    this.#restarting.add(index);
    this.#paused.delete(index);
    try {
      await node.kill();
      await node.start(skewMs);
    } finally {
      this.#restarting.delete(index);
    }
    return `node ${index}: pid ${before} → ${node.pid}`;
  }

  #freeze(index: number): string {
    const node = this.nodes[index]!;
    if (!node.running) return `node ${index} was not running`;
    this.#paused.add(index);
    node.pause();
    return `node ${index} (pid ${node.pid}) frozen`;
  }

  #thaw(index: number): string {
    if (!this.#paused.delete(index)) return '';
    this.nodes[index]!.resume();
    return `node ${index} thawed`;
  }

  async #cutOff(index: number): Promise<string> {
    const namespace = this.#namespaces[index];
    if (namespace === undefined) throw new Error('the nodes run without network namespaces');
    this.#cut.add(index);
    await namespace.cut();
    return `node ${index} cut off PostgreSQL and Kafka`;
  }

  async #join(index: number): Promise<string> {
    if (!this.#cut.delete(index)) return '';
    await this.#namespaces[index]!.heal();
    return `node ${index} reaches PostgreSQL and Kafka again`;
  }

  async #broker(broker: number, action: 'kill-node' | 'start-node'): Promise<string> {
    const command = this.#services.brokerControl;
    if (command === undefined) throw new Error('no broker control command was given');
    try {
      await run('sh', ['-c', `${command} ${action} ${broker}`], { timeout: brokerControlTimeoutMs });
    } catch (error) {
      const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
      throw new MeridianError(
        'UNAVAILABLE',
        `'${command} ${action} ${broker}' failed: ${(stderr || (error as Error).message).slice(-300)}`,
      );
    }
    if (action === 'kill-node') this.#downBrokers.add(broker);
    else this.#downBrokers.delete(broker);
    return action === 'kill-node' ? `broker ${broker} down` : `broker ${broker} back`;
  }

  async heal(): Promise<void> {
    for (const broker of [...this.#downBrokers]) await this.#broker(broker, 'start-node');
    for (const index of [...this.#paused]) this.#thaw(index);
    for (const index of [...this.#cut]) await this.#join(index);
    for (const node of this.nodes) if (!node.running) await node.start();
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
  }

  kill(): void {
    for (const node of this.nodes) void node.kill();
  }

  /** Deletes the namespaces, drops the run's schema and deletes its work topic. */
  async cleanup(): Promise<void> {
    for (const namespace of this.#namespaces) await namespace.destroy();
    const { default: pg } = await import('pg');
    const client = new pg.Client({ connectionString: this.context.pgUrl, connectionTimeoutMillis: 5000 });
    try {
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${this.context.pgSchema}" CASCADE`);
    } finally {
      await client.end().catch(() => undefined);
    }
    const { KafkaLog, parseBrokerList } = await import('../log/kafka/index.ts');
    const log = new KafkaLog({
      brokers: parseBrokerList(this.context.kafkaBrokers),
      clientId: 'meridian-verify',
    });
    try {
      await log.deleteTopic(this.context.workTopic).catch(() => undefined);
    } finally {
      await log.close();
    }
  }
}
