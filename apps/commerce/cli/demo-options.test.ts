// `commerce demo` options: defaults, the PORT variable, and clear errors for bad values.
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../../src/index.ts';
import { parseDemoOptions } from './demo-options.ts';

describe('commerce demo options', () => {
  it('defaults to ./.meridian on port 7070 with traffic and a healthy payment gateway', () => {
    expect(parseDemoOptions([])).toEqual({
      dataDir: './.meridian',
      host: '127.0.0.1',
      port: 7070,
      traffic: true,
      trafficRate: 2,
      paymentFailureRate: 0,
      paymentLatencyMs: 0,
      paymentTimeoutRate: 0,
      paymentLostResponseRate: 0,
      seed: 1,
      durability: 'process',
      maxOrdersInProgress: 1000,
      commitLingerMs: 0,
      auth: true,
      takeOver: false,
    });
  });

  it('takes the port from PORT unless --port says otherwise', () => {
    expect(parseDemoOptions([], { PORT: '8080' })).toMatchObject({ port: 8080 });
    expect(parseDemoOptions(['--port', '0'], { PORT: '8080' })).toMatchObject({ port: 0 });
  });

  it('reads every option', () => {
    const options = parseDemoOptions([
      '--data-dir=/tmp/x',
      '--traffic',
      'off',
      '--payment-failure-rate',
      '1',
      '--payment-latency-ms',
      '250',
      '--payment-lost-response-rate',
      '0.5',
      '--durability',
      'fsync',
      '--max-orders-in-progress',
      '50',
      '--commit-linger-ms',
      '2',
    ]);
    expect(options).toMatchObject({
      dataDir: '/tmp/x',
      traffic: false,
      paymentFailureRate: 1,
      paymentLatencyMs: 250,
      paymentLostResponseRate: 0.5,
      durability: 'fsync',
      maxOrdersInProgress: 50,
      commitLingerMs: 2,
    });
    expect(parseDemoOptions(['-h'])).toBe('help');
  });

  it.each([
    [['--port', '70000'], "'--port' must be an integer in [0, 65535]: current value is '70000'"],
    [[], "'PORT' must be an integer in [0, 65535]: current value is 'abc'", { PORT: 'abc' }],
    [['--traffic', 'maybe'], "'--traffic' must be one of 'on', 'off': current value is 'maybe'"],
    [
      ['--payment-failure-rate', '1.5'],
      "'--payment-failure-rate' must be a number in [0, 1]: current value is '1.5'",
    ],
    [
      ['--payment-latency-ms=-1'],
      "'--payment-latency-ms' must be an integer in [0, 60000]: current value is '-1'",
    ],
    [['--traffic-rate', '0'], "'--traffic-rate' must be a number in [0.1, 100]: current value is '0'"],
    [['--data-dir', ''], "'--data-dir' must be a directory path: current value is ''"],
    [
      ['--max-orders-in-progress', '0'],
      "'--max-orders-in-progress' must be an integer in [1, 1000000]: current value is '0'",
    ],
    [
      ['--commit-linger-ms', '101'],
      "'--commit-linger-ms' must be an integer in [0, 100]: current value is '101'",
    ],
    [['--bogus'], "Unknown option '--bogus'"],
    [['extra'], "commerce demo takes no positional arguments: current value is 'extra'"],
  ])('refuses %j', (argv, message, env: Record<string, string> = {}) => {
    expect(() => parseDemoOptions(argv as string[], env)).toThrow(ValidationError);
    expect(() => parseDemoOptions(argv as string[], env)).toThrow(message);
  });
});
