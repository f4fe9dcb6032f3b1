// Raw DEFLATE with a preset dictionary, sized to the small values the log and the store pack
// (a batch of records, a saga's journal, an entity's JSON state).
import { constants, DeflateRaw, deflateRawSync, InflateRaw, inflateRawSync } from 'node:zlib';

/**
 * zlib's calls are sized for streams: each deflate allocated its state for a 32 KiB window
 * (~260 KiB with its hash tables and symbol buffer) and every call a 64 KiB output buffer, of
 * which the result is a view, for values of a few hundred bytes. At 500 commerce orders a
 * second that was most of a gigabyte of malloc a second, freed only as V8 collected the views'
 * buffers, and it showed in the resident memory (docs/benchmarks.md, "Soak").
 *
 * A window as large as the value, its dictionary and zlib's lookahead reaches every byte a
 * match can refer to, so the output is as small as with the full window; the hash and symbol
 * buffers shrink with it. Any raw inflate reads it: the window a stream needs is at most the
 * one it was made with.
 */
const minWindowBits = 9;
const maxWindowBits = 15;

/**
 * zlib keeps MIN_LOOKAHEAD (262) bytes of its window for the match ahead, so a match reaches
 * back at most the window's size less those: the window holds them beside the value and its
 * dictionary (without them, a first version lost matches: a stored response of ~160
 * bytes took 104 instead of 54).
 */
const lookaheadBytes = 262;

function windowBitsFor(bytes: number, dictionary: Uint8Array): number {
  const reach = bytes + dictionary.length + lookaheadBytes;
  return Math.min(maxWindowBits, Math.max(minWindowBits, Math.ceil(Math.log2(reach))));
}

/** zlib's options for deflating `bytes` bytes with `dictionary`, as `PresetDictionary` and `deflateRaw` use them. */
function deflateOptions(bytes: number, dictionary: Uint8Array, windowBits: number) {
  // The symbol buffer (2^(memLevel + 6) entries) holds the whole value as one block.
  return {
    dictionary,
    windowBits,
    memLevel: Math.min(8, Math.max(1, windowBits - 6)),
    chunkSize: deflateChunkSize(bytes),
  };
}

/** An output chunk that holds the DEFLATE of `bytes` bytes in one piece. */
function deflateChunkSize(bytes: number): number {
  return Math.max(64, bytes + 64);
}

/** The first output chunk of an inflate: values pack three to ten times; a larger one takes more. */
function inflateChunkSize(packedBytes: number): number {
  return Math.min(64 * 1024, Math.max(1024, packedBytes * 8));
}

/**
 * The raw DEFLATE of `input` with a dictionary used once (one-shot: zlib's state is freed on
 * return). A dictionary packed with again and again is a `PresetDictionary`. The result is a
 * view into a buffer about its size: copy what you keep.
 */
export function deflateRaw(input: Uint8Array | string, dictionary: Uint8Array): Buffer {
  const bytes = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.length;
  return deflateRawSync(input, deflateOptions(bytes, dictionary, windowBitsFor(bytes, dictionary)));
}

/**
 * The bytes `deflateRaw(…, dictionary)` packed (any raw DEFLATE stream with that dictionary),
 * one-shot. A view into a buffer about its size, copy what you keep. Throws zlib's error on a
 * damaged one.
 */
export function inflateRaw(packed: Uint8Array, dictionary: Uint8Array): Buffer {
  return inflateRawSync(packed, { dictionary, chunkSize: inflateChunkSize(packed.length) });
}

/** The native half of a Node zlib stream (lib/zlib.js's `_handle`) and what each write leaves in `_writeState`. */
interface NativeZlib {
  writeSync(
    flush: number,
    input: Uint8Array,
    inOffset: number,
    inBytes: number,
    output: Uint8Array,
    outOffset: number,
    outBytes: number,
  ): void;
  reset(): void;
}
interface ZlibStreamInternals {
  readonly _handle?: NativeZlib | null;
  readonly _writeState?: Uint32Array;
}

/** Where every engine writes its output before it is copied out at its exact size. */
const scratch = Buffer.allocUnsafeSlow(64 * 1024);

/**
 * One zlib stream, reset and used again for value after value. Each of zlib's one-shot calls
 * builds a stream object (a Transform with its states and native handle), and the handle's
 * weak reference keeps it alive through the young generation's collections: measured
 * (`npm run bench:deflate`), 250–420 bytes promoted to V8's old space per call and freed only by
 * a full collection — at ~8 calls per commerce order, 1–1.7 MB/s at 500 orders/s, which set the
 * rhythm of the full collections and the resident memory's swing. Node has no public API to
 * reuse a stream synchronously, so the engine drives the stream's handle as zlib's own sync path
 * does (lib/zlib.js, `processChunkSync`): `writeSync` with Z_FINISH, then `reset`, which
 * restores the dictionary.
 * Where the handle is not there (another Node), `reusesZlibStreams` is false and the one-shot
 * calls are used; a test checks the pinned Node reuses.
 */
class Engine {
  readonly #stream: DeflateRaw | InflateRaw;
  readonly #handle: NativeZlib;
  readonly #state: Uint32Array;

  constructor(stream: DeflateRaw | InflateRaw) {
    const internals = stream as unknown as ZlibStreamInternals;
    if (!isNativeZlib(internals._handle) || !(internals._writeState instanceof Uint32Array)) {
      throw new Error('this Node zlib stream has no native handle to drive');
    }
    this.#stream = stream;
    this.#handle = internals._handle;
    this.#state = internals._writeState;
    // A failed write destroys the stream, which emits 'error' on the next tick: it is thrown below instead.
    stream.on('error', () => {});
  }

  /** `input` through the stream with Z_FINISH, the output copied out at its size; throws zlib's error. */
  run(input: Uint8Array, chunkBytes: number): Buffer {
    const chunks: Buffer[] = [];
    let total = 0;
    let last = scratch;
    let inOffset = 0;
    let inBytes = input.length;
    for (;;) {
      const outBytes = Math.min(scratch.length, chunkBytes);
      this.#handle.writeSync(constants.Z_FINISH, input, inOffset, inBytes, scratch, 0, outBytes);
      if (this.#stream.destroyed) throw this.#stream.errored ?? new Error('zlib failed');
      const [outLeft = 0, inLeft = 0] = this.#state;
      const chunk = Buffer.allocUnsafe(outBytes - outLeft);
      scratch.copy(chunk, 0, 0, chunk.length);
      chunks.push(chunk);
      total += chunk.length;
      last = chunk;
      inOffset += inBytes - inLeft;
      inBytes = inLeft;
      if (outLeft !== 0) break;
      chunkBytes = outBytes * 2;
    }
    this.#handle.reset();
    return chunks.length === 1 ? last : Buffer.concat(chunks, total);
  }
}

function isNativeZlib(handle: unknown): handle is NativeZlib {
  const candidate = handle as Partial<NativeZlib> | null | undefined;
  return typeof candidate?.writeSync === 'function' && typeof candidate.reset === 'function';
}

/** Whether `PresetDictionary` reuses its zlib streams on this Node (else it makes one per call, as zlib's one-shot calls do). */
export const reusesZlibStreams = (() => {
  try {
    const dictionary = Buffer.from('probe');
    const engine = new Engine(new DeflateRaw({ dictionary }));
    const once = engine.run(Buffer.from('probe probe'), 64);
    return (
      once.equals(engine.run(Buffer.from('probe probe'), 64)) &&
      once.equals(deflateRawSync('probe probe', { dictionary }))
    );
  } catch {
    return false;
  }
})();

/**
 * A preset dictionary packed with again and again (a format's fixed dictionary): raw DEFLATE
 * with it, byte for byte what `deflateRaw` gives, on zlib streams kept and reset between values
 * instead of one built per call. Not for a dictionary used once: its streams hold zlib's state
 * (a few KiB to ~260 KiB each) as long as it lives.
 */
export class PresetDictionary {
  readonly #dictionary: Buffer;
  /** Deflate engines by window bits (9–15): the same options as `deflateRaw`, so the same bytes. */
  readonly #deflaters: (Engine | undefined)[] = [];
  #inflater: Engine | undefined;

  constructor(dictionary: Uint8Array | string) {
    this.#dictionary = Buffer.from(dictionary);
  }

  /** The raw DEFLATE of `input`: a buffer of its size. */
  deflate(input: Uint8Array | string): Buffer {
    const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
    if (!reusesZlibStreams) return deflateRaw(bytes, this.#dictionary);
    const windowBits = windowBitsFor(bytes.length, this.#dictionary);
    const engine =
      this.#deflaters[windowBits] ??
      new Engine(new DeflateRaw(deflateOptions(bytes.length, this.#dictionary, windowBits)));
    this.#deflaters[windowBits] = undefined;
    const packed = engine.run(bytes, deflateChunkSize(bytes.length));
    this.#deflaters[windowBits] = engine;
    return packed;
  }

  /** What `deflate` (or any raw DEFLATE with this dictionary) packed; throws zlib's error on a damaged value. */
  inflate(packed: Uint8Array): Buffer {
    if (!reusesZlibStreams) return inflateRaw(packed, this.#dictionary);
    const engine = this.#inflater ?? new Engine(new InflateRaw({ dictionary: this.#dictionary }));
    this.#inflater = undefined;
    const text = engine.run(packed, inflateChunkSize(packed.length));
    this.#inflater = engine;
    return text;
  }
}
