// What packing a value costs the store and the log: zlib's one-shot calls (a stream built per
// call) against a PresetDictionary's kept stream, on a ~220-byte JSON value with a dictionary,
// in µs per call and in bytes each call leaves in V8's old space until a full collection (what
// set the rhythm of the soak's full collections, docs/benchmarks.md "Soak"). Prints one line.
//   npm run bench:deflate -- [calls=50000]
import { getHeapSpaceStatistics } from 'node:v8';
import { deflateRaw, inflateRaw, PresetDictionary, reusesZlibStreams } from '../src/deflate.ts';

const calls = Number(process.argv[2] ?? 50_000);
if (!Number.isInteger(calls) || calls < 1)
  throw new RangeError(`calls must be a positive integer: current value is ${process.argv[2]}`);
const collect = (globalThis as { gc?: () => void }).gc;
if (collect === undefined) throw new Error('run with --expose-gc (npm run bench:deflate does)');

const dictionary = Buffer.from(
  '{"id":"","type":"","status":"pending","confirmed","items":[{"quantity":,"price":',
);
const value = JSON.stringify({
  orderId: 'ord-01a24de8346f32e6bd59f585',
  customerId: 'customer-628',
  items: [{ sku: 'sku-00053', qty: 2, price: 3 }],
  status: 'confirmed',
  chargeId: 'ch_00000001',
  placedAt: 1_796_603_393_528,
});
const preset = new PresetDictionary(dictionary);
const packed = preset.deflate(value);

function oldSpaceBytes(): number {
  return getHeapSpaceStatistics().find((space) => space.space_name === 'old_space')?.space_used_size ?? 0;
}

/** µs per call and old-space bytes left per call (no full collection in between: young ones only). */
function measure(call: () => Buffer): string {
  for (let index = 0; index < 1_000; index++) call();
  collect?.();
  const before = oldSpaceBytes();
  const started = process.hrtime.bigint();
  let bytes = 0;
  for (let index = 0; index < calls; index++) bytes += call().length;
  const micros = Number(process.hrtime.bigint() - started) / 1_000 / calls;
  const promoted = (oldSpaceBytes() - before) / calls;
  if (bytes === 0) throw new Error('no output');
  return `${micros.toFixed(2)} µs, ${Math.max(0, promoted).toFixed(0)} B to old space`;
}

const figures = [
  `deflate one-shot ${measure(() => deflateRaw(value, dictionary))}`,
  `kept ${measure(() => preset.deflate(value))}`,
  `inflate one-shot ${measure(() => inflateRaw(packed, dictionary))}`,
  `kept ${measure(() => preset.inflate(packed))}`,
];
console.log(
  `deflate: ${calls} calls each, ${Buffer.byteLength(value)} B value -> ${packed.length} B, streams kept: ${reusesZlibStreams}; per call: ${figures.join('; ')}`,
);
