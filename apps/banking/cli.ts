// `banking`: the banking case study's gateway, with or without resilience policies.

import { parseCommandLine } from '../../src/cli/index.ts';
import { generateApiKey } from '../../src/http/index.ts';
import { ValidationError } from '../../src/index.ts';
import { createBankingApp } from './app.ts';

export const BANKING_USAGE = `Usage: banking [--port <n>] [--policies on|off]

Starts the mobile banking gateway (auth → balance) of the banking case study.
  --port       port to listen on, 0 for any free one (default 7080)
  --policies   'on': timeout, slow-call breaker, bulkhead, cached fallback and load shedding
               around auth; 'off': the naive route that awaits auth however slow (default on)`;

export interface BankingCliOptions {
  port: number;
  policies: boolean;
}

export function parseBankingOptions(argv: string[]): BankingCliOptions | 'help' {
  const values = parseCommandLine('banking', argv, {
    port: { type: 'string' },
    policies: { type: 'string' },
  });
  if (values === 'help') return 'help';
  const portText = values.port ?? '7080';
  const policies = values.policies ?? 'on';
  const port = /^\d+$/.test(portText) ? Number(portText) : Number.NaN;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new ValidationError(`'--port' must be an integer in [0, 65535]: current value is '${portText}'`);
  }
  if (policies !== 'on' && policies !== 'off') {
    throw new ValidationError(`'--policies' must be 'on' or 'off': current value is '${policies}'`);
  }
  return { port, policies: policies === 'on' };
}

export async function run(argv: string[]): Promise<number> {
  const options = parseBankingOptions(argv);
  if (options === 'help') {
    console.log(BANKING_USAGE);
    return 0;
  }
  // A fresh operator key per start, shown once: the /admin routes change the experiment.
  const operator = generateApiKey({ subject: 'operator', role: 'operator' });
  const app = await createBankingApp({
    policies: options.policies,
    gatewayAuth: { apiKeys: [operator.record] },
  });
  const url = await app.gateway.listen({ port: options.port });
  console.log(`Banking gateway (policies ${options.policies ? 'on' : 'off'}) listening on ${url}`);
  console.log(`  operator API key (this run only): ${operator.key}`);
  console.log(`  curl -s ${url}/mobile/balance/acc-1 -H 'authorization: token-cust-1'`);
  console.log(
    `  curl -s -X PUT ${url}/admin/auth -H 'x-api-key: ${operator.key}' -H 'content-type: application/json' -d '{"latencyMs":2000}'`,
  );
  console.log(`  curl -s ${url}/readyz    ${url}/policies -H 'x-api-key: ${operator.key}'`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await app.close();
  return 0;
}
