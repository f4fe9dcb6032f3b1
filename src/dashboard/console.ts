import type { Registry } from 'prom-client';
import { NotFoundError } from '../errors.ts';
import { type Gateway, Type } from '../http/index.ts';
import type { DeadLetter, Runtime } from '../runtime/index.ts';
import { consoleAsset } from './assets.ts';
import { ConsoleEvents } from './events.ts';

export interface ConsoleOptions {
  /** The gateway's metrics prefix, to read its request figures. @default 'meridian_' */
  readonly metricsPrefix?: string;
  /** Where a trace id links to: `{traceId}` is replaced. @default from OTEL_EXPORTER_ZIPKIN_ENDPOINT, else none */
  readonly traceUrl?: string;
  /** How often the live view is pushed, ms, 100 to 5000. @default 500 */
  readonly pushIntervalMs?: number;
}

const sagaStatuses = ['running', 'compensating', 'completed', 'compensated', 'failed', 'cancelled'] as const;

/** The trace id of a saga, from its journal's start entry. */
function traceIdOf(journal: ReadonlyArray<{ name: string; result: unknown }>): string | null {
  const traceparent = (journal[0]?.result as { traceparent?: unknown } | null)?.traceparent;
  return typeof traceparent === 'string' ? (traceparent.split('-')[1] ?? null) : null;
}

function defaultTraceUrl(): string | undefined {
  const endpoint = process.env.OTEL_EXPORTER_ZIPKIN_ENDPOINT;
  if (endpoint === undefined) return undefined;
  try {
    return `${new URL(endpoint).origin}/zipkin/traces/{traceId}`;
  } catch {
    return undefined;
  }
}

function letterView(letter: DeadLetter) {
  const text = (bytes: Uint8Array | null) =>
    bytes === null ? null : Buffer.from(bytes).toString('utf8').slice(0, 2000);
  return {
    subscription: letter.subscription,
    topic: letter.topic,
    partition: letter.partition,
    offset: letter.offset,
    error: letter.error,
    attempts: letter.attempts,
    at: letter.at,
    key: text(letter.key),
    value: text(letter.value),
    deadLetter: letter.deadLetter,
  };
}

/**
 * The live web console, served by the node's own gateway: `/` is its page (a static shell,
 * public), `/console/assets/*` its files, and `/console/api/*` the data it shows and the actions
 * it offers, for operators only (the same authentication as every route). Live figures arrive
 * over Server-Sent Events (`/console/api/events`) every `pushIntervalMs`.
 */
export function registerConsole(gateway: Gateway, runtime: Runtime, options: ConsoleOptions = {}): void {
  const traceUrl = options.traceUrl ?? defaultTraceUrl();
  const events = new ConsoleEvents(runtime, gateway.metrics as Registry, {
    metricsPrefix: options.metricsPrefix ?? 'meridian_',
    pushIntervalMs: options.pushIntervalMs ?? 500,
  });
  const page = async (
    _request: unknown,
    reply: { header(n: string, v: string): unknown; send(b: unknown): unknown },
  ) => {
    const asset = consoleAsset('index.html')!;
    reply.header('content-type', asset.type);
    reply.header('cache-control', 'no-cache');
    return reply.send(await asset.body);
  };
  gateway.route({ method: 'GET', url: '/', access: 'public', schema: { hide: true }, handler: page });
  gateway.route({ method: 'GET', url: '/console', access: 'public', schema: { hide: true }, handler: page });
  gateway.route({
    method: 'GET',
    url: '/console/assets/:name',
    access: 'public',
    schema: { hide: true, params: Type.Object({ name: Type.String({ maxLength: 64 }) }) },
    handler: async (request, reply) => {
      const asset = consoleAsset(request.params.name);
      if (asset === undefined) throw new NotFoundError(`The console has no file '${request.params.name}'`);
      return reply
        .header('content-type', asset.type)
        .header('cache-control', 'max-age=300')
        .send(await asset.body);
    },
  });
  registerDataRoutes(gateway, runtime, traceUrl);
  gateway.route({
    method: 'GET',
    url: '/console/api/events',
    schema: { summary: 'The console’s live figures, as Server-Sent Events', tags: ['console'] },
    loadShedder: false,
    handler: (request, reply) => events.serve(request, reply),
  });
}

function registerDataRoutes(gateway: Gateway, runtime: Runtime, traceUrl: string | undefined): void {
  gateway.route({
    method: 'GET',
    url: '/console/api/sagas',
    schema: {
      summary: 'Sagas, filtered by status and type, or found by id',
      tags: ['console'],
      querystring: Type.Object({
        status: Type.Optional(Type.Union(sagaStatuses.map((status) => Type.Literal(status)))),
        type: Type.Optional(Type.String({ maxLength: 200 })),
        q: Type.Optional(Type.String({ maxLength: 200 })),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
        afterId: Type.Optional(Type.String({ maxLength: 200 })),
      }),
    },
    handler: async (request) => {
      const { status, type, q, limit, afterId } = request.query;
      const page = await runtime.sagas({
        ...(status === undefined ? {} : { status }),
        ...(type === undefined || type === '' ? {} : { type }),
        ...(afterId === undefined ? {} : { afterId }),
        limit: limit ?? 100,
      });
      const found = q === undefined || q === '' ? page : page.filter((saga) => saga.id.includes(q));
      if (q !== undefined && q !== '' && !found.some((saga) => saga.id === q)) {
        const exact = await runtime.saga(q).catch(() => null);
        if (exact !== null) found.unshift(exact);
      }
      return { sagas: found.map(({ input: _input, output: _output, ...saga }) => saga) };
    },
  });
  gateway.route({
    method: 'GET',
    url: '/console/api/sagas/:id',
    schema: {
      summary: 'One saga’s timeline: its progress, journal and trace',
      tags: ['console'],
      params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 200 }) }),
    },
    handler: async (request) => {
      const progress = await runtime.progress(request.params.id);
      if (progress === null) throw new NotFoundError(`No saga '${request.params.id}'`);
      const journal = await runtime.journal(request.params.id);
      const traceId = traceIdOf(journal);
      return {
        progress,
        journal,
        traceId,
        traceUrl: traceId === null || traceUrl === undefined ? null : traceUrl.replace('{traceId}', traceId),
      };
    },
  });
  gateway.route({
    method: 'GET',
    url: '/console/api/topics',
    schema: { summary: 'Topics, partitions, end offsets and consumer lag', tags: ['console'] },
    handler: async () => ({ topics: await runtime.topics() }),
  });
  gateway.route({
    method: 'GET',
    url: '/console/api/dead-letters',
    schema: {
      summary: 'Dead letters',
      tags: ['console'],
      querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) }),
    },
    handler: async (request) => ({
      deadLetters: (await runtime.deadLetters({ limit: request.query.limit ?? 200 })).map(letterView),
    }),
  });
  registerRetry(gateway, runtime);
  registerCancel(gateway, runtime);
}

/**
 * Cancels a saga (`runtime.cancelSaga`), from any node: 200 with 'requested' or 'duplicate',
 * 404 when there is no such saga, 409 when it has ended otherwise than cancelled.
 */
function registerCancel(gateway: Gateway, runtime: Runtime): void {
  gateway.route({
    method: 'POST',
    url: '/console/api/sagas/:id/cancel',
    schema: {
      summary: 'Cancels a saga: it stops at its next durable boundary, compensates and ends cancelled',
      tags: ['console'],
      params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 200 }) }),
      body: Type.Object({ reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })) }),
    },
    handler: async (request) => {
      const { reason } = request.body;
      const cancellation = await runtime.cancelSaga(
        request.params.id,
        reason === undefined ? {} : { reason },
      );
      return { id: request.params.id, cancellation };
    },
  });
}

function registerRetry(gateway: Gateway, runtime: Runtime): void {
  const where = Type.Object({
    partition: Type.Integer({ minimum: 0, maximum: 100_000 }),
    offset: Type.Integer({ minimum: 0 }),
  });
  gateway.route({
    method: 'POST',
    url: '/console/api/dead-letters/retry',
    schema: {
      summary: 'Puts dead letters back on their topics (a batch of 1 to 100), one result each',
      tags: ['console'],
      body: Type.Object({ letters: Type.Array(where, { minItems: 1, maxItems: 100 }) }),
    },
    handler: async (request) => {
      const results = [];
      for (const letter of request.body.letters) {
        try {
          results.push({ ok: true, ...letter, retried: await runtime.retryDeadLetter(letter) });
        } catch (error) {
          results.push({ ok: false, ...letter, error: (error as Error).message.slice(0, 500) });
        }
      }
      return { results };
    },
  });
}
