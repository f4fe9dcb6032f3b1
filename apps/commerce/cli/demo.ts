// `commerce demo` (`npm start`): the commerce reference system on the embedded shape.
import { resolve } from 'node:path';
import { type CommandOutput, consoleOutput } from '../../../src/cli/index.ts';
import { isMeridianError } from '../../../src/index.ts';
import { type CommerceServer, startCommerceServer } from '../server.ts';
import { Traffic } from '../traffic.ts';
import { DEMO_USAGE, type DemoOptions, parseDemoOptions } from './demo-options.ts';

async function banner(options: DemoOptions, server: CommerceServer): Promise<string[]> {
  const settings = await server.payments.settings();
  const local = server.url.replace('://127.0.0.1', '://localhost');
  return [
    `Commerce API listening on ${server.url}`,
    `  data directory   ${resolve(options.dataDir)}${server.resumedOrders > 0 ? ` (resumed ${server.resumedOrders} order${server.resumedOrders === 1 ? '' : 's'} in flight)` : ''}`,
    `  OpenAPI          ${server.url}/openapi.json    probes /healthz /readyz, metrics /metrics`,
    `  payment gateway  ${server.paymentUrl}  (failure rate ${settings.failureRate}, latency ${settings.latencyMs} ms, timeout rate ${settings.timeoutRate}, lost responses ${settings.lostResponseRate})`,
    `  traffic          ${options.traffic ? `${options.trafficRate} orders/s (--traffic off to disable)` : 'off'}`,
    '',
    'Try:',
    `  curl -s -X PUT ${local}/inventory/tour-1 -H 'content-type: application/json' -d '{"available":3,"price":25}'`,
    `  curl -s -X POST ${local}/orders -H 'content-type: application/json' -H 'Idempotency-Key: tour-order-1' \\`,
    `       -d '{"customerId":"ada","items":[{"sku":"tour-1","qty":1}]}'`,
    `  curl -s ${local}/orders/<orderId>`,
    `  curl -s -X PUT ${local}/payments/settings -H 'content-type: application/json' -d '{"failureRate":1}'`,
    '',
    'Ctrl-C drains and exits; starting again on the same data directory resumes what was in flight.',
  ];
}

/**
 * Runs `commerce demo`. Exit codes: 0 after a clean drain, 1 when the server could not start,
 * 2 for invalid options. The first SIGINT/SIGTERM drains (no new requests, running steps
 * finish, orders park where they are); a second one exits at once, which is safe too: every
 * order resumes from its journal on the next start.
 */
export async function run(argv: string[], output: CommandOutput = consoleOutput): Promise<number> {
  let options: DemoOptions | 'help';
  try {
    options = parseDemoOptions(argv, process.env);
  } catch (error) {
    if (!isMeridianError(error)) throw error;
    output.err(`commerce demo: ${error.message}\n\n${DEMO_USAGE}`);
    return 2;
  }
  if (options === 'help') {
    output.out(DEMO_USAGE);
    return 0;
  }
  const selected = options;

  let server: CommerceServer;
  try {
    server = await startCommerceServer({
      dataDir: selected.dataDir,
      host: selected.host,
      port: selected.port,
      durability: selected.durability,
      paymentSeed: selected.seed,
      payment: {
        failureRate: selected.paymentFailureRate,
        latencyMs: selected.paymentLatencyMs,
        timeoutRate: selected.paymentTimeoutRate,
        lostResponseRate: selected.paymentLostResponseRate,
      },
      app: {
        // Room for the configured latency: a call timing out on every attempt only ends in a
        // refund. (Latency raised later with PUT /payments/settings can still outrun it.)
        orders: { paymentCallTimeoutMs: Math.max(2000, selected.paymentLatencyMs + 1000) },
        maxOrdersInProgress: selected.maxOrdersInProgress,
        runtime: {
          commitLingerMs: selected.commitLingerMs,
          onProblem: (problem) =>
            output.err(
              `runtime: ${problem.message}${problem.sagaId === undefined ? '' : ` (order ${problem.sagaId})`}: ${problem.error}`,
            ),
        },
      },
    });
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'EADDRINUSE') {
      output.err(
        `commerce demo: port ${selected.port} on ${selected.host} is in use: pass --port <n> (or PORT=<n>), or stop the other process`,
      );
      return 1;
    }
    if (isMeridianError(error)) {
      output.err(`commerce demo: ${error.code}: ${error.message}`);
      return 1;
    }
    throw error;
  }
  for (const line of await banner(selected, server)) output.out(line);

  const traffic = selected.traffic
    ? new Traffic({ url: server.url, ordersPerSecond: selected.trafficRate, report: output.out })
    : undefined;
  if (traffic !== undefined) {
    traffic.start().catch((error: unknown) => output.err(`traffic: ${(error as Error).message}`));
  }

  return new Promise<number>((done) => {
    let draining = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (draining) {
        output.err(`${signal} again: exiting now; in-flight orders resume on the next start.`);
        process.exit(130);
      }
      draining = true;
      output.out(`${signal}: draining (requests in flight finish, orders park where they are)...`);
      void (async () => {
        try {
          await traffic?.stop();
          await server.close();
          output.out(`Stopped cleanly. Start again with --data-dir ${selected.dataDir} to resume.`);
          done(0);
        } catch (error) {
          output.err(`commerce demo: draining failed: ${(error as Error).message}`);
          done(1);
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
      })();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
