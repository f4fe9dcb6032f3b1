import { randomBytes } from 'node:crypto';
// `commerce payments`: the simulated payment gateway of the commerce app as a process of its own,
// the one gateway every `commerce node` of a cluster charges through.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  type CommandOutput,
  consoleOutput,
  integer,
  number,
  parseCommandLine,
} from '../../../src/cli/index.ts';
import { isMeridianError, ValidationError } from '../../../src/index.ts';
import { createPaymentGateway, type PaymentGateway } from '../payment-gateway.ts';

export interface PaymentsOptions {
  /** @default '127.0.0.1' */
  host: string;
  /** @default 7090 */
  port: number;
  /** Where the ledger (`payments.jsonl`) lives. @default './.meridian-payments' */
  dataDir: string;
  /** Seed of the fault rolls. @default 1 */
  seed: number;
  /** Share of calls answered 503 at start. @default 0 */
  failureRate: number;
  /** Delay of every call at start (ms). @default 0 */
  latencyMs: number;
  /** Forget charges and refunds this many seconds after they were made; undefined keeps them all. */
  forgetAfterS: number | undefined;
}

export const PAYMENTS_USAGE = `Usage: commerce payments [options]

Runs the commerce app's simulated payment gateway as its own process, with its ledger of charges
and refunds in <data-dir>/payments.jsonl (kept across restarts). Every 'commerce node' of a
cluster charges through one gateway: pass its URL to each node with --payments. 'commerce demo'
runs the same gateway on a thread of its own process instead. Faults can be changed while it
runs: curl -X PUT <url>/settings -H 'content-type: application/json' -d '{"failureRate":0.2}'.

Options:
  --port <n>              HTTP port, 0..65535; 0 picks a free one (default 7090)
  --host <address>        address to listen on (default 127.0.0.1)
  --data-dir <path>       ledger directory (default ./.meridian-payments)
  --seed <n>              seed of the fault rolls, 0..4294967295 (default 1)
  --failure-rate <0..1>   share of calls answered 503 (default 0)
  --latency-ms <ms>       delay of every call, 0..60000 (default 0)
  --forget-after-s <s>    forget charges and refunds this long after they were made, from memory
                          (the file keeps them), as real providers expire idempotency keys: their
                          keys may charge anew and a forgotten charge cannot be refunded; for a
                          gateway that runs for hours. 1..31536000 (default: never)
  -h, --help              show this help`;

export function parsePaymentsOptions(argv: string[]): PaymentsOptions | 'help' {
  const values = parseCommandLine('commerce payments', argv, {
    port: { type: 'string' },
    host: { type: 'string' },
    'data-dir': { type: 'string' },
    seed: { type: 'string' },
    'failure-rate': { type: 'string' },
    'latency-ms': { type: 'string' },
    'forget-after-s': { type: 'string' },
  });
  if (values === 'help') return 'help';
  const dataDir = values['data-dir'] ?? './.meridian-payments';
  if (dataDir.trim() === '')
    throw new ValidationError(`'--data-dir' must be a directory path: current value is ''`);
  const host = values.host ?? '127.0.0.1';
  if (host.trim() === '') throw new ValidationError(`'--host' must be an address: current value is ''`);
  return {
    host,
    port: values.port === undefined ? 7090 : integer('--port', values.port, 0, 65_535),
    dataDir,
    seed: values.seed === undefined ? 1 : integer('--seed', values.seed, 0, 4_294_967_295),
    failureRate: number('--failure-rate', values['failure-rate'], 0, 0, 1),
    latencyMs:
      values['latency-ms'] === undefined ? 0 : integer('--latency-ms', values['latency-ms'], 0, 60_000),
    forgetAfterS:
      values['forget-after-s'] === undefined
        ? undefined
        : integer('--forget-after-s', values['forget-after-s'], 1, 31_536_000),
  };
}

async function start(options: PaymentsOptions, output: CommandOutput): Promise<PaymentGateway | number> {
  mkdirSync(options.dataDir, { recursive: true });
  // Callers present this key; one given in the environment stays the same across restarts.
  const apiKey = process.env.MERIDIAN_PAYMENTS_API_KEY || randomBytes(32).toString('base64url');
  const gateway = createPaymentGateway({
    apiKey,
    ledgerPath: join(options.dataDir, 'payments.jsonl'),
    seed: options.seed,
    settings: { failureRate: options.failureRate, latencyMs: options.latencyMs },
    ...(options.forgetAfterS === undefined ? {} : { forgetAfterMs: options.forgetAfterS * 1000 }),
  });
  try {
    const url = await gateway.listen({ host: options.host, port: options.port });
    output.out(`Payment gateway listening on ${url}`);
    output.out(`  ledger    ${resolve(options.dataDir, 'payments.jsonl')}`);
    output.out(`  settings  ${url}/settings    charges ${url}/charges    refunds ${url}/refunds`);
    output.out(
      `  nodes     MERIDIAN_PAYMENTS_API_KEY=${process.env.MERIDIAN_PAYMENTS_API_KEY ? '<as set>' : apiKey} commerce node --payments ${url} ...`,
    );
    return gateway;
  } catch (error) {
    await gateway.close();
    if ((error as { code?: unknown }).code === 'EADDRINUSE') {
      output.err(
        `commerce payments: port ${options.port} on ${options.host} is in use: pass --port <n>, or stop the other process`,
      );
      return 1;
    }
    throw error;
  }
}

/** Runs `commerce payments`. Exit codes: 0 after SIGINT/SIGTERM, 1 when it could not listen, 2 for invalid options. */
export async function run(argv: string[], output: CommandOutput = consoleOutput): Promise<number> {
  let options: PaymentsOptions | 'help';
  try {
    options = parsePaymentsOptions(argv);
  } catch (error) {
    if (!isMeridianError(error)) throw error;
    output.err(`commerce payments: ${error.message}\n\n${PAYMENTS_USAGE}`);
    return 2;
  }
  if (options === 'help') {
    output.out(PAYMENTS_USAGE);
    return 0;
  }
  const gateway = await start(options, output);
  if (typeof gateway === 'number') return gateway;
  const signal = await new Promise<NodeJS.Signals>((done) => {
    const first = (received: NodeJS.Signals) => {
      process.off('SIGINT', first);
      process.off('SIGTERM', first);
      const again = () => process.exit(130);
      process.once('SIGINT', again);
      process.once('SIGTERM', again);
      done(received);
    };
    process.on('SIGINT', first);
    process.on('SIGTERM', first);
  });
  output.out(`${signal}: closing the payment gateway (its ledger is kept; a second signal exits at once).`);
  await gateway.close();
  return 0;
}
