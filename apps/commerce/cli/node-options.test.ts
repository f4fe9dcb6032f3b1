// `commerce node` and `commerce payments` options: defaults, environment variables, and a clear
// error for every bad value.
import { describe, expect, it } from 'vitest';
import { defaultNodeId } from '../../../src/cli/index.ts';
import { ValidationError } from '../../../src/index.ts';
import { parseNodeOptions } from './node-options.ts';
import { parsePaymentsOptions } from './payments.ts';

const required = [
  '--pg',
  'postgres://postgres@127.0.0.1:5432/test',
  '--kafka',
  '127.0.0.1:9092',
  '--payments',
  'http://127.0.0.1:7090',
  '--auth',
  'off',
];

describe('commerce node options', () => {
  it('defaults everything but the three dependencies', () => {
    expect(parseNodeOptions(required, {}, 'box')).toEqual({
      pgUrl: 'postgres://postgres@127.0.0.1:5432/test',
      pgSchema: 'meridian',
      kafkaBrokers: ['127.0.0.1:9092'],
      nodeId: 'box-7071',
      host: '127.0.0.1',
      port: 7071,
      workPartitions: 16,
      workTopic: 'meridian.work',
      group: 'meridian.nodes',
      replicationFactor: undefined,
      paymentsUrl: 'http://127.0.0.1:7090',
      requestTimeoutMs: 10_000,
      sessionTimeoutMs: 8000,
      maxOrdersInProgress: 1000,
      checkTimeoutMs: 5000,
      shutdownTimeoutMs: 30_000,
      authSecret: undefined,
      paymentsApiKey: undefined,
      redis: undefined,
    });
  });

  it('requires the token signing secret unless --auth off, and takes the payment key from the environment', () => {
    const withAuth = required.slice(0, -2);
    expect(() => parseNodeOptions(withAuth, {}, 'box')).toThrow(/MERIDIAN_AUTH_SECRET must be set/);
    expect(() => parseNodeOptions(withAuth, { MERIDIAN_AUTH_SECRET: 'short' }, 'box')).toThrow(
      /current length is 5/,
    );
    const secret = 's'.repeat(32);
    expect(
      parseNodeOptions(
        withAuth,
        { MERIDIAN_AUTH_SECRET: secret, MERIDIAN_PAYMENTS_API_KEY: 'k'.repeat(32) },
        'box',
      ),
    ).toMatchObject({ authSecret: secret, paymentsApiKey: 'k'.repeat(32) });
  });

  it('takes Redis as a URL or as a Redis Cluster node list, and refuses anything else', () => {
    expect(parseNodeOptions([...required, '--redis', 'redis://127.0.0.1:6379'])).toMatchObject({
      redis: { url: 'redis://127.0.0.1:6379' },
    });
    expect(
      parseNodeOptions(required, { MERIDIAN_REDIS_URL: '127.0.0.1:17001,127.0.0.1:17002' }),
    ).toMatchObject({
      redis: { clusterNodes: ['127.0.0.1:17001', '127.0.0.1:17002'] },
    });
    expect(() => parseNodeOptions([...required, '--redis', 'http://127.0.0.1:6379'])).toThrow(
      "'--redis' must be a redis:// URL or a Redis Cluster's comma-separated host:port nodes: current value is 'http://127.0.0.1:6379'",
    );
  });

  it('reads the dependencies and the node id from the environment, options first', () => {
    const env = {
      MERIDIAN_PG_URL: 'postgresql://u:p@db:5432/shop',
      MERIDIAN_PG_SCHEMA: 'shop_1',
      MERIDIAN_KAFKA_BROKERS: 'k1:9092, k2:9092,k3:9092',
      MERIDIAN_NODE_ID: 'node-a',
      MERIDIAN_PAYMENTS_URL: 'https://pay.example:8443',
      MERIDIAN_AUTH_SECRET: 'a-signing-secret-of-32-characters',
      PORT: '8081',
    };
    expect(parseNodeOptions([], env)).toMatchObject({
      pgUrl: 'postgresql://u:p@db:5432/shop',
      pgSchema: 'shop_1',
      kafkaBrokers: ['k1:9092', 'k2:9092', 'k3:9092'],
      nodeId: 'node-a',
      paymentsUrl: 'https://pay.example:8443',
      port: 8081,
    });
    expect(
      parseNodeOptions(
        ['--pg-schema', 'other', '--node-id', 'node-b', '--port', '7072', '--kafka', 'x:1'],
        env,
      ),
    ).toMatchObject({ pgSchema: 'other', nodeId: 'node-b', port: 7072, kafkaBrokers: ['x:1'] });
    // An empty variable counts as unset.
    expect(parseNodeOptions(required, { MERIDIAN_NODE_ID: '', MERIDIAN_PG_SCHEMA: '' }, 'h')).toMatchObject({
      nodeId: 'h-7071',
      pgSchema: 'meridian',
    });
  });

  it('reads every other option', () => {
    expect(
      parseNodeOptions([
        ...required,
        '--host=0.0.0.0',
        '--port=7073',
        '--work-partitions=4',
        '--work-topic=t.work-1',
        '--group=g.nodes-1',
        '--replication-factor=3',
        '--request-timeout-ms=2000',
        '--session-timeout-ms=6000',
        '--max-orders-in-progress=50',
        '--check-timeout-ms=1000',
        '--shutdown-timeout-ms=5000',
      ]),
    ).toMatchObject({
      host: '0.0.0.0',
      port: 7073,
      workPartitions: 4,
      workTopic: 't.work-1',
      group: 'g.nodes-1',
      replicationFactor: 3,
      requestTimeoutMs: 2000,
      sessionTimeoutMs: 6000,
      maxOrdersInProgress: 50,
      checkTimeoutMs: 1000,
      shutdownTimeoutMs: 5000,
    });
    expect(parseNodeOptions(['--help'])).toBe('help');
    expect(parseNodeOptions(['-h'])).toBe('help');
  });

  it('derives a stable node id from the host name and the port', () => {
    expect(defaultNodeId('box', 7071)).toBe('box-7071');
    expect(defaultNodeId('my box.local', 7072)).toBe('my-box.local-7072');
    expect(defaultNodeId('_.x', 1)).toBe('x-1');
    expect(defaultNodeId('', 1)).toBe('node-1');
    expect(parseNodeOptions(required, {}, 'box')).toEqual(parseNodeOptions(required, {}, 'box'));
  });

  const without = (option: string) => {
    const index = required.indexOf(option);
    return [...required.slice(0, index), ...required.slice(index + 2)];
  };

  it.each([
    [without('--pg'), 'no PostgreSQL given: pass --pg'],
    [without('--pg'), "to run without PostgreSQL and Kafka, use 'commerce demo'"],
    [without('--kafka'), 'no Kafka given: pass --kafka 127.0.0.1:9092'],
    [
      without('--payments'),
      "no payment gateway given: every node charges through the same one; start it with 'commerce payments --port 7090",
    ],
    [
      without('--payments'),
      'A gateway per node would let a node that takes over an order charge it a second time',
    ],
    [[...required, '--pg', 'not a url'], "'--pg' must be a URL: current value is 'not a url'"],
    [
      [...required, '--pg', 'mysql://h/db'],
      "'--pg' must be a postgres:// or postgresql:// URL: current value is 'mysql://h/db'",
    ],
    [
      [...required, '--payments', 'ftp://h'],
      "'--payments' must be a http:// or https:// URL: current value is 'ftp://h'",
    ],
    [
      [...required, '--kafka', '127.0.0.1'],
      "'--kafka' must be 1 to 100 comma-separated host:port brokers: current value is '127.0.0.1'",
    ],
    [[...required, '--kafka', ','], "'--kafka' must be 1 to 100 comma-separated host:port brokers"],
    [[...required, '--kafka', 'h:70000'], "current value is 'h:70000'"],
    [
      [...required, '--pg-schema', 'Bad-Schema'],
      "'--pg-schema' must be a PostgreSQL schema name matching /^[a-z_][a-z0-9_]{0,62}$/: current value is 'Bad-Schema'",
    ],
    [
      [...required, '--node-id', 'a b'],
      "'--node-id' must be 1 to 100 characters from [A-Za-z0-9._-], starting with a letter or digit: current value is 'a b'",
    ],
    [[...required, '--port', '0'], "'--node-id' is required with --port 0"],
    [[...required, '--port', '65536'], "'--port' must be an integer in [0, 65535]: current value is '65536'"],
    [[...required, '--host', ''], "'--host' must be an address: current value is ''"],
    [
      [...required, '--work-partitions', '0'],
      "'--work-partitions' must be an integer in [1, 1024]: current value is '0'",
    ],
    [[...required, '--work-partitions', '2.5'], "'--work-partitions' must be an integer in [1, 1024]"],
    [
      [...required, '--work-topic', 'bad topic'],
      "'--work-topic' must be 1 to 100 characters from [A-Za-z0-9._-], starting with a letter or digit: current value is 'bad topic'",
    ],
    [[...required, '--group', '.g'], "'--group' must be 1 to 100 characters"],
    [
      [...required, '--replication-factor', '0'],
      "'--replication-factor' must be an integer in [1, 16]: current value is '0'",
    ],
    [
      [...required, '--request-timeout-ms', '99'],
      "'--request-timeout-ms' must be an integer in [100, 600000]",
    ],
    [
      [...required, '--session-timeout-ms', '5999'],
      "'--session-timeout-ms' must be an integer in [6000, 300000]",
    ],
    [
      [...required, '--max-orders-in-progress', '0'],
      "'--max-orders-in-progress' must be an integer in [1, 1000000]",
    ],
    [[...required, '--check-timeout-ms', '60001'], "'--check-timeout-ms' must be an integer in [100, 60000]"],
    [
      [...required, '--shutdown-timeout-ms', '999'],
      "'--shutdown-timeout-ms' must be an integer in [1000, 600000]",
    ],
    [[...required, '--bogus'], "Unknown option '--bogus'"],
    [[...required, 'extra'], "commerce node takes no positional arguments: current value is 'extra'"],
  ])('refuses %j', (argv, message) => {
    expect(() => parseNodeOptions(argv as string[])).toThrow(ValidationError);
    expect(() => parseNodeOptions(argv as string[])).toThrow(message);
  });

  it.each([
    [{ MERIDIAN_PG_URL: 'http://x' }, "'MERIDIAN_PG_URL' must be a postgres:// or postgresql:// URL"],
    [{ MERIDIAN_KAFKA_BROKERS: 'nope' }, "'MERIDIAN_KAFKA_BROKERS' must be 1 to 100 comma-separated"],
    [{ MERIDIAN_PAYMENTS_URL: '::' }, "'MERIDIAN_PAYMENTS_URL' must be a URL"],
    [{ MERIDIAN_PG_SCHEMA: '1x' }, "'MERIDIAN_PG_SCHEMA' must be a PostgreSQL schema name"],
    [{ MERIDIAN_NODE_ID: '-x' }, "'MERIDIAN_NODE_ID' must be 1 to 100 characters"],
    [{ PORT: 'abc' }, "'PORT' must be an integer in [0, 65535]: current value is 'abc'"],
  ])('names the environment variable that is wrong: %j', (env, message) => {
    const base = {
      MERIDIAN_PG_URL: 'postgres://h/db',
      MERIDIAN_KAFKA_BROKERS: 'h:9092',
      MERIDIAN_PAYMENTS_URL: 'http://h:7090',
      MERIDIAN_AUTH_SECRET: 'a-cluster-signing-secret-of-32-chars',
    };
    expect(() => parseNodeOptions([], { ...base, ...env })).toThrow(message);
  });
});

describe('commerce payments options', () => {
  it('defaults to port 7090 and ./.meridian-payments, and reads every option', () => {
    expect(parsePaymentsOptions([])).toEqual({
      host: '127.0.0.1',
      port: 7090,
      dataDir: './.meridian-payments',
      seed: 1,
      failureRate: 0,
      latencyMs: 0,
    });
    expect(
      parsePaymentsOptions([
        '--port=0',
        '--host=0.0.0.0',
        '--data-dir=/tmp/p',
        '--seed=7',
        '--failure-rate=0.5',
        '--latency-ms=20',
        '--forget-after-s=600',
      ]),
    ).toEqual({
      host: '0.0.0.0',
      port: 0,
      dataDir: '/tmp/p',
      seed: 7,
      failureRate: 0.5,
      latencyMs: 20,
      forgetAfterS: 600,
    });
    expect(parsePaymentsOptions(['-h'])).toBe('help');
  });

  it.each([
    [['--port=-1'], "'--port' must be an integer in [0, 65535]: current value is '-1'"],
    [['--data-dir', ''], "'--data-dir' must be a directory path: current value is ''"],
    [['--host', ''], "'--host' must be an address: current value is ''"],
    [['--seed', 'x'], "'--seed' must be an integer in [0, 4294967295]: current value is 'x'"],
    [['--failure-rate', '2'], "'--failure-rate' must be a number in [0, 1]: current value is '2'"],
    [['--latency-ms', '60001'], "'--latency-ms' must be an integer in [0, 60000]: current value is '60001'"],
    [
      ['--forget-after-s', '0'],
      "'--forget-after-s' must be an integer in [1, 31536000]: current value is '0'",
    ],
    [['--bogus'], "Unknown option '--bogus'"],
    [['extra'], "commerce payments takes no positional arguments: current value is 'extra'"],
  ])('refuses %j', (argv, message) => {
    expect(() => parsePaymentsOptions(argv)).toThrow(ValidationError);
    expect(() => parsePaymentsOptions(argv)).toThrow(message);
  });
});
