// `commerce demo` (`npm start`): the commerce reference system on the embedded shape.
import { resolve } from 'node:path';
import { type CommandOutput, consoleOutput } from '../../../src/cli/index.ts';
import { isMeridianError } from '../../../src/index.ts';
import type { DirectoryOwnerInfo } from '../../../src/store/index.ts';
import { type CommerceServer, startCommerceServer } from '../server.ts';
import { Traffic } from '../traffic.ts';
import { DEMO_USAGE, type DemoOptions, parseDemoOptions } from './demo-options.ts';

/** The tokens the demo prints: an operator's, and a customer's (ada) for trying ownership. */
export interface DemoTokens {
  operator: string;
  customer: string;
}

async function demoTokens(server: CommerceServer): Promise<DemoTokens | undefined> {
  const auth = server.devAuth;
  if (auth === undefined) return undefined;
  return {
    operator: await auth.issue('demo-operator', 'operator'),
    customer: await auth.issue('ada', 'customer'),
  };
}

function authLines(server: CommerceServer, tokens: DemoTokens | undefined): string[] {
  if (tokens === undefined) {
    return [
      '',
      '  !!! WARNING: --auth off: every caller is an operator. Anyone who can reach this port can',
      '  !!! change inventory and payment settings and read every order. Local experiments only.',
      '',
    ];
  }
  return [
    `  auth             development tokens (24 h), signed with ${server.devAuth!.secretPath}:`,
    `    operator       export TOKEN=${tokens.operator}`,
    `    customer ada   export ADA=${tokens.customer}`,
  ];
}

async function banner(
  options: DemoOptions,
  server: CommerceServer,
  tokens: DemoTokens | undefined,
): Promise<string[]> {
  const settings = await server.payments.settings();
  const local = server.url.replace('://127.0.0.1', '://localhost');
  const operator = tokens === undefined ? '' : ` -H "authorization: Bearer $TOKEN"`;
  const ada = tokens === undefined ? '' : ` -H "authorization: Bearer $ADA"`;
  return [
    `Commerce API listening on ${server.url}`,
    `  data directory   ${resolve(options.dataDir)}${server.resumedOrders > 0 ? ` (resumed ${server.resumedOrders} order${server.resumedOrders === 1 ? '' : 's'} in flight)` : ''}`,
    `  OpenAPI          ${server.url}/openapi.json    probes /healthz /readyz, metrics /metrics`,
    `  console          ${local}/${tokens === undefined ? '' : `#token=${tokens.operator}`}`,
    `  payment gateway  ${server.paymentUrl}  (failure rate ${settings.failureRate}, latency ${settings.latencyMs} ms, timeout rate ${settings.timeoutRate}, lost responses ${settings.lostResponseRate})`,
    `  traffic          ${options.traffic ? `${options.trafficRate} orders/s (--traffic off to disable)` : 'off'}`,
    ...authLines(server, tokens),
    '',
    'Try:',
    `  curl -s -X PUT ${local}/inventory/tour-1${operator} -H 'content-type: application/json' -d '{"available":3,"price":25}'`,
    `  curl -s -X POST ${local}/orders${ada} -H 'content-type: application/json' -H 'Idempotency-Key: tour-order-1' \\`,
    `       -d '{${tokens === undefined ? '"customerId":"ada",' : ''}"items":[{"sku":"tour-1","qty":1}]}'`,
    `  curl -s ${local}/orders/<orderId>${ada}`,
    `  curl -s -X PUT ${local}/payments/settings${operator} -H 'content-type: application/json' -d '{"failureRate":1}'`,
    '',
    'Ctrl-C drains and exits; starting again on the same data directory resumes what was in flight.',
  ];
}

/**
 * Runs `commerce demo`. Exit codes: 0 after a clean drain, 1 when the server could not start
 * (a data directory in use by another process included), 3 when another process took it over,
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

  // Set once the server runs: another process took the data directory over.
  let takenOver: (by: DirectoryOwnerInfo) => void = () => undefined;
  let server: CommerceServer;
  try {
    server = await startCommerceServer({
      dataDir: selected.dataDir,
      host: selected.host,
      port: selected.port,
      durability: selected.durability,
      ...(selected.auth ? {} : { auth: false }),
      takeOver: selected.takeOver,
      onTakenOver: (by) => takenOver(by),
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
  const tokens = await demoTokens(server);
  const lines = await banner(selected, server, tokens);
  // The last line ("Ctrl-C drains...") is printed once the signal handlers are in place: a
  // script that signals as soon as it reads it must not meet the default handler.
  const ready = lines.pop()!;
  for (const line of lines) output.out(line);
  const previous = server.ownership.tookOverFrom;
  if (previous !== undefined) {
    output.out(
      `Took the data directory over from process ${previous.pid} (${previous.command.slice(0, 80)}); it exits.`,
    );
  }
  if (tokens === undefined) output.err('meridian demo: WARNING: authentication is off (--auth off)');

  const traffic = selected.traffic
    ? new Traffic({
        url: server.url,
        ordersPerSecond: selected.trafficRate,
        report: output.out,
        ...(tokens === undefined ? {} : { token: tokens.operator }),
      })
    : undefined;
  if (traffic !== undefined) {
    traffic.start().catch((error: unknown) => output.err(`traffic: ${(error as Error).message}`));
  }

  return new Promise<number>((done) => {
    let draining = false;
    // Taken over: the other process owns the directory (and fences this one's writes): exit.
    takenOver = (by) => {
      if (draining) return;
      draining = true;
      output.err(
        `meridian demo: process ${by.pid} on ${by.host} took the data directory ${selected.dataDir} over (--take-over); stopping this one.`,
      );
      void (async () => {
        await traffic?.stop().catch(() => undefined);
        await server.close().catch(() => undefined);
        done(3);
      })();
    };
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
    output.out(ready);
  });
}
