// The cluster layer's public surface: how ids map to work partitions, the error a write for a
// partition this node does not own raises, and the header relayed records carry. Membership and
// the commit path are the runtime's (createRuntime({ cluster })).
export { NotOwnedError } from './ownership.ts';
export { maxWorkPartitions, workPartitionOf } from './partitions.ts';
export { messageIdOf, outboxHeader } from './relay.ts';
