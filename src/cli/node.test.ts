// `meridian node <module>`: its options, and any app module run as a real cluster node on real
// PostgreSQL and Kafka — it serves the module's routes, reports its partitions in /readyz, and
// drains on SIGTERM with exit 0.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../errors.ts';
import { issueToken } from '../http/index.ts';
import { createKafkaLog, parseBrokerList } from '../log/kafka/index.ts';
import { testSchemas } from '../store/postgres/test-schema.ts';
import { parseNodeOptions } from './node.ts';

const pgUrl = process.env.MERIDIAN_TEST_PG_URL;
const kafkaText = process.env.MERIDIAN_TEST_KAFKA_BROKERS;
const unique = `${process.pid}-${randomBytes(3).toString('hex')}`;
const directory = mkdtempSync(join(tmpdir(), 'meridian-node-module-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

const secret = randomBytes(32).toString('base64url');

describe('meridian node options', () => {
  it('takes the module and the cluster options, with their environment variables', () => {
    expect(
      parseNodeOptions(
        ['src/app.ts', '--pg', 'postgres://p@h/db', '--kafka', 'k:9092'],
        { PORT: '7075', MERIDIAN_AUTH_SECRET: secret },
        'box',
      ),
    ).toMatchObject({
      module: 'src/app.ts',
      pgUrl: 'postgres://p@h/db',
      kafkaBrokers: ['k:9092'],
      nodeId: 'box-7075',
      authSecret: secret,
    });
  });

  it('needs the token signing secret, or --auth off said out loud', () => {
    const argv = ['src/app.ts', '--pg', 'postgres://p@h/db', '--kafka', 'k:9092'];
    expect(() => parseNodeOptions(argv, {}, 'box')).toThrow(/MERIDIAN_AUTH_SECRET must be set/);
    expect(parseNodeOptions([...argv, '--auth', 'off'], {}, 'box')).toMatchObject({ authSecret: undefined });
  });

  it.each([
    [[], 'meridian node needs an app module'],
    [
      ['app.ts'],
      "no PostgreSQL given: pass --pg postgres://user@host:5432/database or set MERIDIAN_PG_URL (to run without PostgreSQL and Kafka, use 'meridian dev')",
    ],
    [['app.ts', '--pg', 'postgres://h/db'], 'no Kafka given'],
  ])('%j is refused: %s', (argv, message) => {
    expect(() => parseNodeOptions(argv, {}, 'box')).toThrow(ValidationError);
    expect(() => parseNodeOptions(argv, {}, 'box')).toThrow(message);
  });
});

describe.skipIf(!pgUrl || !kafkaText)(
  `meridian node: an app module as a real node${!pgUrl || !kafkaText ? ' (skipped: set MERIDIAN_TEST_PG_URL and MERIDIAN_TEST_KAFKA_BROKERS)' : ''}`,
  () => {
    it('serves the module, owns the work partitions, and drains on SIGTERM with exit 0', async () => {
      const schemas = testSchemas(pgUrl!, 'node_module');
      const schema = schemas.next();
      const workTopic = `node-module-work-${unique}`;
      const module = join(directory, 'counter.ts');
      writeFileSync(
        module,
        `import { defineApp, entity } from ${JSON.stringify(resolve(import.meta.dirname, '../index.ts'))};
const Counter = entity('Counter', { initial: { n: 0 }, commands: { add: (s: { n: number }) => ({ state: { n: s.n + 1 }, reply: s.n + 1 }) } });
export default defineApp({
  name: 'counter',
  definitions: [Counter],
  routes(gateway, { runtime }) {
    gateway.route({
      method: 'POST', url: '/counters/:id',
      handler: async (request) => ({ n: await runtime.send(Counter, (request.params as { id: string }).id, 'add', {}) }),
    });
  },
});`,
      );
      const child: ChildProcess = spawn(
        process.execPath,
        [
          resolve(import.meta.dirname, 'main.ts'),
          'node',
          module,
          '--port=0',
          `--node-id=node-module-${unique}`,
          `--work-topic=${workTopic}`,
          `--group=node-module-${unique}`,
          '--work-partitions=2',
        ],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: {
            PATH: process.env.PATH ?? '',
            MERIDIAN_AUTH_SECRET: secret,
            MERIDIAN_PG_URL: pgUrl!,
            MERIDIAN_PG_SCHEMA: schema,
            MERIDIAN_KAFKA_BROKERS: kafkaText!,
          },
        },
      );
      let output = '';
      const exited = new Promise<number | null>((done) => child.once('exit', done));
      const url = await new Promise<string>((done, fail) => {
        const onData = (chunk: Buffer) => {
          output += chunk.toString();
          const match = /App 'counter', node '[^']+', listening on (http:\/\/\S+)/.exec(output);
          if (match !== null) done(match[1]!);
        };
        child.stdout!.on('data', onData);
        child.stderr!.on('data', onData);
        void exited.then((code) => fail(new Error(`exited ${code} before its banner:\n${output}`)));
      });
      try {
        // The route is the operator's (the default access): a token signed with the cluster's secret.
        const headers = {
          authorization: `Bearer ${await issueToken({ secret, subject: 'ops', role: 'operator' })}`,
        };
        expect((await fetch(`${url}/counters/c-1`, { method: 'POST' })).status).toBe(401);
        await fetch(`${url}/counters/c-1`, { method: 'POST', headers });
        expect(await (await fetch(`${url}/counters/c-1`, { method: 'POST', headers })).json()).toEqual({
          n: 2,
        });
        const ready = (await (await fetch(`${url}/readyz`)).json()) as {
          checks: Record<string, { detail: string }>;
        };
        expect(ready.checks.cluster?.detail).toMatch(/^owns work partitions \[/);
        child.kill('SIGTERM');
        expect(await exited).toBe(0);
        expect(output).toContain(`Node 'node-module-${unique}' stopped cleanly.`);
      } finally {
        if (child.exitCode === null) child.kill('SIGKILL');
        await schemas.drop(schema);
        await schemas.end();
        const log = await createKafkaLog({ brokers: parseBrokerList(kafkaText!) });
        await log.deleteTopic(workTopic).catch(() => undefined);
        await log.close();
      }
    }, 90_000);
  },
);
