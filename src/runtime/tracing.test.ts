// Tracing, recorded in memory by OpenTelemetry's own exporter: these tests prove that a saga's
// start, steps (retries as events), sends, compensations and end are spans of one trace, that
// entity commands and the records they write are spans whose context the records carry, that a
// batch consume links to its records' producer spans, that a group commit links to the units it
// took, and that a saga resumed after a stop makes no second span for a step it replays from its
// journal. They run on both shapes (the cluster one over PostgreSQL + Kafka, where the context
// travels in the records' headers through the outbox and the broker).
import { afterEach, beforeEach, expect, it } from 'vitest';
import { TerminalError } from '../errors.ts';
import { type RecordedSpans, recordSpansInMemory } from '../telemetry/in-memory.ts';
import { formatTraceparent, parseTraceparent, traceparentHeader } from '../telemetry/traceparent.ts';
import { entity, saga, subscription } from './definitions.ts';
import { describeShapes, openShape, type ShapeFixture } from './shapes.ts';

const Stock = entity('Stock', {
  initial: { available: 5 },
  commands: {
    reserve(state, input: { qty: number }) {
      if (state.available < input.qty) throw new TerminalError(`only ${state.available} left`);
      return { state: { available: state.available - input.qty }, events: [{ reserved: input.qty }] };
    },
    release(state, input: { qty: number }) {
      return { state: { available: state.available + input.qty }, events: [{ released: input.qty }] };
    },
  },
});

const idOf = (span: { spanContext(): { traceId: string; spanId: string } }) => span.spanContext().spanId;
const traceOf = (span: { spanContext(): { traceId: string } }) => span.spanContext().traceId;

/** Ids unique to this run: on the cluster shape the broker keeps topics between runs. */
const run = `${process.pid}-${Date.now()}`;

describeShapes('tracing', (shape) => {
  let spans: RecordedSpans;
  let fixture: ShapeFixture;

  beforeEach(async () => {
    spans = recordSpansInMemory();
    fixture = await openShape(shape);
  });

  afterEach(async () => {
    await fixture.destroy();
    await spans.shutdown();
  });

  it('traces a saga: start, each step with its retries as events, a send, a compensation and the end, in one trace', async () => {
    let payAttempts = 0;
    const Order = saga('TracedOrder', async (ctx, input: { sku: string }) => {
      await ctx.send(
        Stock,
        input.sku,
        'reserve',
        { qty: 2 },
        { compensate: { command: 'release', input: { qty: 2 } } },
      );
      await ctx.step('quote', async () => 'q1', { compensate: async () => {} });
      return ctx.step(
        'pay',
        async () => {
          payAttempts++;
          if (payAttempts === 1) throw new Error('gateway hiccup');
          throw new TerminalError('card declined');
        },
        { retry: { maxAttempts: 3, initialDelayMs: 1, jitter: 'none' } },
      );
    });
    const runtime = await fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(Stock, Order));
    const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const handle = await runtime.startSaga(Order, 'order-1', { sku: 'sku-1' }, { traceparent: parent });
    await expect(handle.result()).rejects.toThrow();
    await fixture.eventually(() => spans.named('saga.end').length === 1, 'the saga end span');

    const [start] = spans.named('saga.start TracedOrder');
    expect(start).toBeDefined();
    expect(traceOf(start!)).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(start!.parentSpanContext?.spanId).toBe('b7ad6b7169203331');
    const [pay] = spans.named('saga.step pay');
    expect(pay!.parentSpanContext?.spanId).toBe(idOf(start!));
    expect(pay!.status.code).toBe(2);
    // Attempt 1 failed and was retried; attempt 2 failed terminally: events, not spans.
    expect(
      pay!.events
        .filter((event) => event.name !== 'exception')
        .map((event) => [event.name, event.attributes?.['meridian.attempt']]),
    ).toEqual([
      ['retry', 1],
      ['attempt failed', 2],
    ]);
    // Undone in reverse order: the quote step, then the stock reservation.
    const compensations = spans.named('saga.compensate').map((span) => span.name);
    expect(compensations).toEqual(['saga.compensate quote', 'saga.compensate Stock.reserve']);
    const send = spans.named('saga.send')[0]!;
    expect(send.attributes['meridian.entity']).toBe('Stock');
    const end = spans.named('saga.end')[0]!;
    expect(end.attributes['meridian.saga.outcome']).toBe('compensated');
    for (const span of [pay!, send, end, ...spans.named('saga.compensate')]) {
      expect(traceOf(span)).toBe(traceOf(start!));
    }
    // The reserve's event carries the trace on: a producer span, child of the send span.
    const producer = spans
      .spans()
      .find(
        (span) => span.name === `send ${Stock.eventsTopic}` && span.parentSpanContext?.spanId === idOf(send),
      );
    expect(producer?.kind).toBe(3); // PRODUCER
    expect(producer?.attributes['messaging.destination.name']).toBe(Stock.eventsTopic);
  });

  it('a consumed batch links to its records’ producer spans, and each record’s handling continues its trace', async () => {
    const topic = fixture.topic('traced-payments');
    await fixture.log.createTopic(topic, { partitions: 1 });
    const handlerTraces: string[] = [];
    const definition = subscription('traced', {
      topic,
      group: fixture.topic('traced-group'),
      partitions: 1,
      handler: async (_record, ctx) => {
        handlerTraces.push(ctx.traceparent);
        await ctx.send(Stock, 'sku-2', 'reserve', { qty: 1 });
      },
    });
    const producers = [
      '00-11111111111111111111111111111111-1111111111111111-01',
      '00-22222222222222222222222222222222-2222222222222222-01',
    ];
    await fixture.log.append(
      topic,
      producers.map((traceparent, index) => ({
        key: `k${index}`,
        value: new TextEncoder().encode('{}'),
        headers: { [traceparentHeader]: traceparent },
      })),
    );
    const runtime = await fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(Stock, definition));
    await fixture.eventually(
      () => (runtime.stats.subscriptions.traced?.handled ?? 0) === 2,
      'both records handled',
    );
    await fixture.eventually(() => spans.named(`process ${topic}`).length >= 2, 'the process spans');

    const processSpans = spans.named(`process ${topic}`);
    const batches = processSpans.filter(
      (span) => span.attributes['messaging.batch.message_count'] !== undefined,
    );
    const linked = batches.flatMap((span) => span.links.map((link) => link.context.traceId));
    expect(linked.sort()).toEqual(producers.map((header) => parseTraceparent(header)!.traceId).sort());
    for (const batch of batches) expect(batch.kind).toBe(4); // CONSUMER
    // Each record's process span is a child of its producer span: the producer's trace goes on.
    const perRecord = processSpans.filter(
      (span) => span.attributes['messaging.batch.message_count'] === undefined,
    );
    expect(perRecord.map((span) => span.parentSpanContext?.spanId).sort()).toEqual([
      '1111111111111111',
      '2222222222222222',
    ]);
    expect(handlerTraces.map((header) => parseTraceparent(header)!.traceId).sort()).toEqual(
      producers.map((header) => parseTraceparent(header)!.traceId).sort(),
    );
    // The commands the handlers sent are spans in those traces too.
    const commands = spans.spans().filter((span) => span.name === `send ${Stock.eventsTopic}`);
    expect(new Set(commands.map(traceOf))).toEqual(
      new Set(producers.map((header) => parseTraceparent(header)!.traceId)),
    );
  });

  it('an entity command is a span; its events carry its trace; the group commit that wrote it links to it', async () => {
    const runtime = await fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(Stock));
    await runtime.send(Stock, `sku-3-${run}`, 'reserve', { qty: 1 });
    const command = spans.named('entity.command Stock.reserve')[0]!;
    expect(command.attributes['meridian.entity.id']).toBe(`sku-3-${run}`);
    await fixture.published();
    const event = await eventOf(`sku-3-${run}`);
    const carried = parseTraceparent(event!.headers[traceparentHeader])!;
    expect(carried.traceId).toBe(traceOf(command));
    const producer = spans.spans().find((span) => span.spanContext().spanId === carried.spanId);
    expect(producer?.parentSpanContext?.spanId).toBe(idOf(command));
    const commits = spans.named('group-commit');
    expect(commits.some((span) => span.links.some((link) => link.context.spanId === idOf(command)))).toBe(
      true,
    );
  });

  /** The latest event keyed `key` (the cluster's broker keeps the topic across tests and runs). */
  async function eventOf(key: string) {
    const { partitions } = await fixture.log.describeTopic(Stock.eventsTopic);
    for (let partition = 0; partition < partitions; partition++) {
      const records = await fixture.log.read(Stock.eventsTopic, partition, 0, { maxRecords: 10_000 });
      const mine = records.filter(
        (record) => record.key !== null && Buffer.from(record.key).toString() === key,
      );
      if (mine.length > 0) return mine[mine.length - 1]!;
    }
    throw new Error(`no event for ${key}`);
  }

  it('a saga resumed after a stop makes no second span for the steps it replays from its journal', async () => {
    let release: () => void = () => {};
    const blocked = new Promise<void>((resolve) => {
      release = resolve;
    });
    let firstRun = true;
    const Resumed = saga('ResumedSaga', async (ctx) => {
      await ctx.step('first', async () => 1);
      return ctx.step('second', async () => {
        if (firstRun) await blocked;
        return 2;
      });
    });
    const before = await fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(Resumed));
    await before.startSaga(Resumed, 'resumed-1', {});
    await fixture.eventually(() => spans.named('saga.step first').length === 1, 'the first step');
    await before.stop();
    firstRun = false;
    release();
    const after = await fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(Resumed));
    await expect(after.handle('resumed-1').result()).resolves.toBe(2);
    await fixture.eventually(() => spans.named('saga.end').length === 1, 'the end span');
    expect(spans.named('saga.step first')).toHaveLength(1);
    expect(spans.named('saga.start')).toHaveLength(1);
    const seconds = spans.named('saga.step second');
    // The attempt abandoned by the stop never ended its span; the resumed one did, once.
    expect(seconds.filter((span) => span.status.code !== 2)).toHaveLength(1);
    const start = spans.named('saga.start')[0]!;
    expect(seconds.every((span) => traceOf(span) === traceOf(start))).toBe(true);
  });

  it('with tracing off, records still carry a valid traceparent from the runtime’s own ids', async () => {
    await spans.shutdown();
    const runtime = await fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(Stock));
    const parent = formatTraceparent({
      traceId: 'abcdefabcdefabcdefabcdefabcdefab',
      spanId: '0123456789abcdef',
      sampled: true,
    });
    await runtime.send(Stock, `sku-4-${run}`, 'reserve', { qty: 1 }, { traceparent: parent });
    await fixture.published();
    const event = await eventOf(`sku-4-${run}`);
    expect(parseTraceparent(event!.headers[traceparentHeader])!.traceId).toBe(
      'abcdefabcdefabcdefabcdefabcdefab',
    );
    expect(spans.spans()).toHaveLength(0);
    spans = recordSpansInMemory();
  });
});
