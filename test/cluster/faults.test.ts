// The commerce cluster under faults, the reduced set CI runs (the full set with its report:
// `node bench/commerce-faults.ts`). Real processes: scripts/cluster/cluster.sh starts three Kafka
// brokers, PostgreSQL with a synchronous standby, Redis, the payment gateway, three nodes and
// HAProxy (about a minute the first time); each fault is injected mid-load and the commerce
// invariants are audited through HAProxy afterwards. Runs only with MERIDIAN_TEST_CLUSTER_FAULTS=1
// (CI sets it in a step of its own).
import { afterAll, describe, expect, it } from 'vitest';
import { awaitAllNodesUp, type Cluster, faults, formatReport, runFault, startCluster } from './faults.ts';

const enabled = process.env.MERIDIAN_TEST_CLUSTER_FAULTS === '1';
const seed = Number(process.env.MERIDIAN_CRASH_SEED ?? 7);

describe.skipIf(!enabled)(
  'the commerce cluster under faults (set MERIDIAN_TEST_CLUSTER_FAULTS=1: real processes, ~3 min)',
  () => {
    let cluster: Cluster | undefined;
    // A cluster this suite started is stopped (and its data deleted) when it ends; one that was
    // already running, an engineer's, is left as it was.
    afterAll(async () => {
      if (cluster?.startedHere === true) await cluster.sh('stop');
    }, 120_000);

    for (const name of ['node-kill', 'pg-failover', 'redis-restart']) {
      it(`keeps the commerce invariants through ${name}`, async () => {
        cluster ??= await startCluster();
        await awaitAllNodesUp(cluster);
        const fault = faults[name];
        if (fault === undefined) throw new Error(`no fault ${name}`);
        const report = await runFault(cluster, fault, {
          seed,
          rate: 10,
          durationS: 16,
          faultAtS: 5,
          settleTimeoutMs: 60_000,
        });
        console.log(formatReport(report));
        expect(report.violations).toEqual([]);
        expect(report.accepted).toBe(report.offered);
        expect(report.confirmed + report.cancelled).toBe(report.accepted);
      }, 300_000);
    }
  },
);
