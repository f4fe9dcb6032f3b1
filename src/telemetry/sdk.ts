import { context, propagation, trace } from '@opentelemetry/api';
import { ValidationError } from '../errors.ts';

/**
 * Turns tracing on from the standard OpenTelemetry environment variables
 * (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/). The SDK
 * and its exporters are imported only here, and only when tracing is enabled: a process that
 * sets none of these variables loads nothing beyond `@opentelemetry/api`, whose spans are no-ops.
 *
 * Enabled when `OTEL_SDK_DISABLED` is not `true` and `OTEL_TRACES_EXPORTER` names an exporter
 * other than `none`, or an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`,
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Exporters: `zipkin`
 * (`OTEL_EXPORTER_ZIPKIN_ENDPOINT`), `otlp` over HTTP with JSON (`OTEL_EXPORTER_OTLP_*`),
 * `console`. The sampler (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), the batch processor
 * (`OTEL_BSP_*`) and the resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`) are read by
 * the SDK itself.
 */
export interface Tracing {
  /** The exporters spans go to. */
  readonly exporters: readonly TraceExporterName[];
  /** Exports every span ended so far. */
  flush(): Promise<void>;
  /** Flushes, then unregisters the provider: spans are no-ops again. */
  shutdown(): Promise<void>;
}

export type TraceExporterName = 'zipkin' | 'otlp' | 'console';

const exporterNames: readonly string[] = ['zipkin', 'otlp', 'console', 'none'];

type Environment = Readonly<Record<string, string | undefined>>;

/** The exporters the environment asks for; empty when tracing stays off. */
export function tracesExportersFromEnv(env: Environment): TraceExporterName[] {
  if ((env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() === 'true') return [];
  const listed = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== '');
  for (const name of listed) {
    if (!exporterNames.includes(name)) {
      throw new ValidationError(
        `OTEL_TRACES_EXPORTER names '${name.slice(0, 40)}', which Meridian does not ship: use zipkin, otlp, console or none (comma-separated)`,
      );
    }
  }
  if (listed.includes('none')) return [];
  if (listed.length > 0) return [...new Set(listed)] as TraceExporterName[];
  const otlpEndpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  return otlpEndpoint !== undefined && otlpEndpoint.trim() !== '' ? ['otlp'] : [];
}

function checkOtlpProtocol(env: Environment): void {
  const protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? '').trim();
  if (protocol !== '' && protocol !== 'http/json') {
    throw new ValidationError(
      `OTEL_EXPORTER_OTLP_PROTOCOL is '${protocol.slice(0, 40)}', but Meridian's OTLP exporter speaks http/json: unset it or set http/json (a collector accepts both on port 4318)`,
    );
  }
}

function checkedUrl(variable: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    url = new URL('invalid:');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ValidationError(
      `${variable} must be an http(s) URL: current value is '${value.slice(0, 100)}'`,
    );
  }
  return value;
}

let active: Tracing | null = null;

/**
 * Starts tracing as the environment says (see above) and registers it as the global
 * OpenTelemetry provider; null when the environment leaves tracing off, or when it is already
 * on. `serviceName` is used when `OTEL_SERVICE_NAME` is unset.
 */
export async function startTracingFromEnv(
  env: Environment = process.env,
  options: { serviceName?: string } = {},
): Promise<Tracing | null> {
  const names = tracesExportersFromEnv(env);
  if (names.length === 0 || active !== null) return null;
  if (names.includes('otlp')) checkOtlpProtocol(env);
  const [sdk, resources, hooks, core] = await Promise.all([
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/context-async-hooks'),
    import('@opentelemetry/core'),
  ]);
  const exporters = await Promise.all(names.map((name) => exporterFor(name, env)));
  const serviceName = env.OTEL_SERVICE_NAME ?? options.serviceName ?? 'meridian';
  const resource = resources
    .resourceFromAttributes({ 'service.name': serviceName })
    .merge(resources.detectResources({ detectors: [resources.envDetector] }));
  const provider = new sdk.BasicTracerProvider({
    resource,
    spanProcessors: exporters.map((exporter) => new sdk.BatchSpanProcessor(exporter)),
  });
  const contextManager = new hooks.AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(new core.W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  const tracing: Tracing = {
    exporters: names,
    flush: () => provider.forceFlush(),
    async shutdown() {
      // A backend that is gone by now loses the last spans; the drain itself must not fail for it.
      await provider.shutdown().catch(() => {});
      trace.disable();
      context.disable();
      propagation.disable();
      if (active === tracing) active = null;
    },
  };
  active = tracing;
  return tracing;
}

/** The endpoints come from `env` (not only process.env), so a caller can pass its own. */
async function exporterFor(name: TraceExporterName, env: Environment) {
  switch (name) {
    case 'zipkin': {
      const { ZipkinExporter } = await import('@opentelemetry/exporter-zipkin');
      // @default http://localhost:9411/api/v2/spans (the exporter's own)
      const url = env.OTEL_EXPORTER_ZIPKIN_ENDPOINT?.trim();
      return new ZipkinExporter(url ? { url: checkedUrl('OTEL_EXPORTER_ZIPKIN_ENDPOINT', url) } : {});
    }
    case 'otlp': {
      const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
      // The signal-specific variable is the full URL; the general one is a base the path is added to.
      const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
      const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
      const url = traces
        ? checkedUrl('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', traces)
        : base
          ? `${checkedUrl('OTEL_EXPORTER_OTLP_ENDPOINT', base).replace(/\/+$/, '')}/v1/traces`
          : undefined;
      // Headers and timeout: OTEL_EXPORTER_OTLP_(TRACES_)HEADERS and _TIMEOUT, read by the exporter.
      return new OTLPTraceExporter(url === undefined ? {} : { url });
    }
    case 'console': {
      const { ConsoleSpanExporter } = await import('@opentelemetry/sdk-trace-base');
      return new ConsoleSpanExporter();
    }
  }
}
