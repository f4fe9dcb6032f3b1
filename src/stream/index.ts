/**
 * Stream processing in event time: a typed dataflow over log topics (map, filter, flatMap,
 * keyBy), tumbling, sliding and session windows with watermarks, allowed lateness and a late
 * side output, incremental aggregations, and sinks whose writes commit with the window state
 * and the input offsets in one transaction (exactly-once). See docs/stream.md.
 */
export { type Aggregator, aggregator, count, first, last, max, min, sum } from './aggregators.ts';
export {
  fromTopic,
  KeyedStream,
  Stream,
  TopicSource,
  type TopicSourceOptions,
  WindowedStream,
  type WindowOptions,
} from './dataflow.ts';
export {
  type CommitEvent,
  openStreamJob,
  StreamJob,
  type StreamJobOptions,
  type StreamMetrics,
} from './job.ts';
export {
  PartitionedStreamJob,
  type PartitionedStreamJobOptions,
  startPartitionedStreamJob,
} from './partitioned-job.ts';
export {
  cacheSink,
  callbackSink,
  type ReadModelSinkOptions,
  readModelSink,
  type Sink,
  type SinkScope,
  topicSink,
} from './sinks.ts';
export { Table, type TableOptions, tableFromTopic } from './table.ts';
export { WatermarkTracker } from './watermarks.ts';
export type { WindowResult } from './window-operator.ts';
export { session, sliding, type TimeDomain, tumbling, type Window, type WindowAssigner } from './windows.ts';
