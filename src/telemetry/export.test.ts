// Traces reach real backends: an app serving an HTTP request that starts a saga, with tracing
// switched on by the standard OTEL_* variables, exports one trace (the request's server span, the
// saga's start, its steps and its end) to a real Zipkin server, found there by the caller's trace
// id through Zipkin's own query API; and the same spans reach an OTLP/HTTP receiver as OTLP JSON.
// Zipkin's test runs when MERIDIAN_TEST_ZIPKIN_URL is set (CI starts scripts/zipkin/zipkin.sh).
import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { defineApp } from '../app/app.ts';
import { ValidationError } from '../errors.ts';
import { Type } from '../http/index.ts';
import { entity, saga } from '../runtime/definitions.ts';
import { startTestApp, type TestApp } from '../testing/index.ts';
import { startTracingFromEnv, type Tracing, tracesExportersFromEnv } from './sdk.ts';

const zipkinUrl = process.env.MERIDIAN_TEST_ZIPKIN_URL;

const Stock = entity('TracedStock', {
  initial: { available: 3 },
  commands: {
    reserve: (state: { available: number }) => ({
      state: { available: state.available - 1 },
      events: [{ reserved: 1 }],
    }),
  },
});

const Order = saga('TracedCheckout', async (ctx, input: { sku: string }) => {
  await ctx.send(Stock, input.sku, 'reserve', {});
  return ctx.step('charge', async () => 'charged');
});

const app = defineApp({
  name: 'traced-shop',
  definitions: [Stock, Order],
  routes(gateway, { runtime }) {
    gateway.route({
      method: 'POST',
      url: '/checkouts/:id',
      access: 'public',
      schema: { params: Type.Object({ id: Type.String({ maxLength: 64 }) }) },
      handler: async (request) => {
        const handle = await runtime.startSaga(Order, request.params.id, { sku: 'sku-1' });
        return { output: await handle.result() };
      },
    });
  },
});

/** A caller's traceparent with a fresh trace id, so each run finds its own trace. */
function callerTrace(): { traceId: string; header: string } {
  const traceId = [...crypto.getRandomValues(new Uint8Array(16))]
    .map((byte) => byte.toString(16).padStart(2, '0'))
    .join('');
  return { traceId, header: `00-${traceId}-00f067aa0ba902b7-01` };
}

async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe('trace export', () => {
  let tracing: Tracing | null = null;
  let running: TestApp | undefined;
  let receiver: Server | undefined;

  afterEach(async () => {
    await running?.destroy();
    running = undefined;
    await tracing?.shutdown();
    tracing = null;
    await new Promise<void>((resolve) =>
      receiver === undefined ? resolve() : receiver.close(() => resolve()),
    );
    receiver = undefined;
  });

  it('reads the exporters from the environment, and refuses what it cannot do with a clear error', () => {
    expect(tracesExportersFromEnv({})).toEqual([]);
    expect(tracesExportersFromEnv({ OTEL_TRACES_EXPORTER: 'zipkin,otlp' })).toEqual(['zipkin', 'otlp']);
    expect(tracesExportersFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' })).toEqual([
      'otlp',
    ]);
    expect(tracesExportersFromEnv({ OTEL_TRACES_EXPORTER: 'zipkin', OTEL_SDK_DISABLED: 'true' })).toEqual([]);
    expect(tracesExportersFromEnv({ OTEL_TRACES_EXPORTER: 'none' })).toEqual([]);
    expect(() => tracesExportersFromEnv({ OTEL_TRACES_EXPORTER: 'jaeger' })).toThrow(ValidationError);
    expect(() => tracesExportersFromEnv({ OTEL_TRACES_EXPORTER: 'jaeger' })).toThrow(
      /zipkin, otlp, console or none/,
    );
  });

  it('refuses an endpoint that is not an http(s) URL and an OTLP protocol it does not speak, registering nothing', async () => {
    await expect(
      startTracingFromEnv({
        OTEL_TRACES_EXPORTER: 'zipkin',
        OTEL_EXPORTER_ZIPKIN_ENDPOINT: 'ftp://host/spans',
      }),
    ).rejects.toThrow(/OTEL_EXPORTER_ZIPKIN_ENDPOINT must be an http\(s\) URL/);
    await expect(
      startTracingFromEnv({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
      }),
    ).rejects.toThrow(/speaks http\/json/);
  });

  it.skipIf(zipkinUrl === undefined)(
    'a request, its saga and the saga’s steps reach a real Zipkin server as one trace',
    async () => {
      const serviceName = `meridian-test-${process.pid}-${Date.now()}`;
      tracing = await startTracingFromEnv({
        OTEL_TRACES_EXPORTER: 'zipkin',
        OTEL_EXPORTER_ZIPKIN_ENDPOINT: `${zipkinUrl}/api/v2/spans`,
        OTEL_SERVICE_NAME: serviceName,
      });
      expect(tracing?.exporters).toEqual(['zipkin']);
      running = await startTestApp(app, { auth: false });
      const caller = callerTrace();
      const response = await fetch(`${running.url}/checkouts/c-1`, {
        method: 'POST',
        headers: { traceparent: caller.header },
      });
      expect(await response.json()).toEqual({ output: 'charged' });
      await tracing!.flush();

      interface ZipkinSpan {
        id: string;
        parentId?: string;
        name: string;
        kind?: string;
        localEndpoint?: { serviceName?: string };
      }
      const spans = await eventually('the trace in Zipkin', async () => {
        const answer = await fetch(`${zipkinUrl}/api/v2/trace/${caller.traceId}`);
        if (answer.status !== 200) return undefined;
        const found = (await answer.json()) as ZipkinSpan[];
        return found.some((span) => span.name.startsWith('saga.end')) ? found : undefined;
      });
      const byName = (prefix: string) => spans.filter((span) => span.name.startsWith(prefix));
      const [server] = byName('post /checkouts/:id');
      expect(server?.kind).toBe('SERVER');
      expect(server?.parentId).toBe('00f067aa0ba902b7');
      expect(server?.localEndpoint?.serviceName).toBe(serviceName);
      const [start] = byName('saga.start tracedcheckout');
      expect(start?.parentId).toBe(server?.id);
      for (const name of ['saga.send tracedstock.reserve', 'saga.step charge', 'saga.end tracedcheckout']) {
        expect(byName(name).map((span) => span.parentId)).toEqual([start?.id]);
      }
      expect(byName('send tracedstock.events')[0]?.kind).toBe('PRODUCER');
    },
  );

  it('the same spans reach an OTLP/HTTP receiver as OTLP JSON', async () => {
    const bodies: Array<{ path: string; body: string; type: string }> = [];
    receiver = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        bodies.push({
          path: request.url ?? '',
          body: Buffer.concat(chunks).toString('utf8'),
          type: String(request.headers['content-type']),
        });
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => receiver!.listen(0, '127.0.0.1', resolve));
    const { port } = receiver.address() as { port: number };
    tracing = await startTracingFromEnv({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
      OTEL_SERVICE_NAME: 'meridian-otlp-test',
    });
    expect(tracing?.exporters).toEqual(['otlp']);
    running = await startTestApp(app, { auth: false });
    const caller = callerTrace();
    await fetch(`${running.url}/checkouts/c-2`, { method: 'POST', headers: { traceparent: caller.header } });
    await tracing!.flush();
    const names = await eventually('OTLP export', async () => {
      const spans = bodies.flatMap(({ body }) => {
        const parsed = JSON.parse(body) as {
          resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ name: string; traceId: string }> }> }>;
        };
        return parsed.resourceSpans.flatMap((resource) =>
          resource.scopeSpans.flatMap((scope) => scope.spans),
        );
      });
      const ours = spans.filter((span) => span.traceId === caller.traceId).map((span) => span.name);
      return ours.some((name) => name.startsWith('saga.end')) ? ours : undefined;
    });
    expect(bodies[0]?.path).toBe('/v1/traces');
    expect(bodies[0]?.type).toContain('application/json');
    expect(names).toEqual(
      expect.arrayContaining(['POST /checkouts/:id', 'saga.start TracedCheckout', 'saga.step charge']),
    );
  });
});
