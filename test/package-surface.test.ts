// The package's surface as an importer sees it: the root is the curated app author's API, and
// importing it (or meridian/testing) loads no integration — no HTTP server, database driver,
// Kafka or Redis client, metrics registry — while the subpaths that are about them do.
import { execFileSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { packageEntries } from './package-entries.ts';

function entry(specifier: string) {
  const found = packageEntries.find((candidate) => candidate.specifier === specifier);
  if (found === undefined) throw new Error(`package.json exports no '${specifier}'`);
  return found;
}

/** Imports `file` in a fresh Node process; the bare specifiers it resolved and the names it exports. */
function load(file: string): { packages: string[]; names: string[] } {
  const script = `
    import { registerHooks } from 'node:module';
    const packages = new Set();
    registerHooks({ resolve(specifier, context, next) {
      if (!specifier.startsWith('.') && !specifier.startsWith('node:') && !specifier.startsWith('file:')) packages.add(specifier);
      return next(specifier, context);
    } });
    const module = await import(${JSON.stringify(pathToFileURL(file).href)});
    process.stdout.write(JSON.stringify({ packages: [...packages], names: Object.keys(module).sort() }));
  `;
  return JSON.parse(
    execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }),
  );
}

describe('the package surface', () => {
  it('the root exports the app author API and nothing else (values; types are erased)', () => {
    expect(load(entry('meridian').source).names).toEqual([
      'AlreadyExistsError',
      'AssertionFailedError',
      'ClosedError',
      'ConflictError',
      'MeridianError',
      'NonDeterminismError',
      'NotFoundError',
      'RetryableError',
      'Runtime',
      'SagaCancelledError',
      'SagaEndedError',
      'SagaNotCompletedError',
      'SignalTimeoutError',
      'StepFailedError',
      'StepTimeoutError',
      'TerminalError',
      'ValidationError',
      'assert',
      'createRuntime',
      'defineApp',
      'ensureError',
      'entity',
      'isMeridianError',
      'isTerminalError',
      'saga',
      'startApp',
      'startEmbeddedApp',
      'subscription',
      'systemClock',
      'systemRandom',
      'systemTimers',
    ]);
  });

  it('importing meridian, meridian/testing or the core subpaths loads no third-party package but the OpenTelemetry API', () => {
    for (const specifier of [
      'meridian',
      'meridian/testing',
      'meridian/log',
      'meridian/store',
      'meridian/runtime',
      'meridian/cluster',
      'meridian/stream',
      'meridian/cli',
      'meridian/chaos',
      'meridian/kafka', // the client loads on a KafkaLog's first use
      'meridian/telemetry', // the SDK and exporters load only when OTEL_* variables turn tracing on
    ]) {
      // The API alone: spans are its no-ops until a provider is registered (docs/observability.md).
      const packages = load(entry(specifier).source).packages.filter((name) => name !== '@opentelemetry/api');
      expect({ specifier, packages }).toEqual({ specifier, packages: [] });
    }
  }, 90_000); // nine fresh Node processes: slow on a loaded machine

  it('the integrations load with the subpath that is about them', () => {
    expect(load(entry('meridian/http').source).packages).toEqual(
      expect.arrayContaining(['fastify', 'prom-client']),
    );
    expect(load(entry('meridian/postgres').source).packages).toContain('pg');
    // A simulation spec's HTTP face is Meridian's gateway: Fastify comes with it, not with meridian/chaos.
    expect(load(entry('meridian/chaos/http').source).packages).toContain('fastify');
    // The cache's L1 is lru-cache; ioredis comes only with the client an app hands the cache.
    expect(load(entry('meridian/cache').source).packages).toEqual(['lru-cache']);
  });
});
