/**
 * What the runtime measures as it works, for metrics: each a plain record handed to whoever
 * listens (the gateway's Prometheus registry does, `registerRuntimeMetrics`). Listeners are
 * disposable subscriptions, so metrics watch the runtime without the runtime knowing of them.
 */
export type RuntimeMeasurement =
  | {
      readonly kind: 'saga-ended';
      readonly sagaType: string;
      readonly outcome: 'completed' | 'compensated' | 'failed' | 'cancelled';
      /** From the saga's creation to its end. */
      readonly durationMs: number;
    }
  | {
      readonly kind: 'step-attempt';
      readonly sagaType: string;
      readonly step: string;
      /** `retried`: it failed and will run again; `failed`: it failed for good. */
      readonly outcome: 'succeeded' | 'retried' | 'failed';
    }
  | {
      readonly kind: 'compensation';
      readonly sagaType: string;
      readonly outcome: 'succeeded' | 'retried' | 'failed';
    }
  | { readonly kind: 'commit'; readonly units: number; readonly durationMs: number; readonly ok: boolean };

export type MeasurementListener = (measurement: RuntimeMeasurement) => void;

/** Listeners at most: metrics registries, not per-request subscribers. */
const maxListeners = 16;

export class RuntimeMeter {
  readonly #listeners = new Set<MeasurementListener>();

  /** Calls `listener` with every measurement from now on, until disposed. */
  on(listener: MeasurementListener): { dispose(): void } {
    if (this.#listeners.size >= maxListeners) {
      throw new RangeError(`A runtime takes at most ${maxListeners} measurement listeners`);
    }
    this.#listeners.add(listener);
    return { dispose: () => this.#listeners.delete(listener) };
  }

  emit(measurement: RuntimeMeasurement): void {
    for (const listener of this.#listeners) {
      try {
        listener(measurement);
      } catch {
        // A failing metrics listener must not fail the work it measures.
      }
    }
  }
}
