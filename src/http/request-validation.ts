/**
 * How the gateway checks requests against route schemas, with a bound on the work and on the
 * answer whatever the request holds. Bodies are checked strictly: unknown fields are errors (not
 * silently dropped) and types are not coerced (`"qty": "2"` is not a number). The check stops at
 * the first error, and sizes (`maxItems`, `maxProperties`, `maxLength`) are checked before an
 * array's items or an object's properties, so a 1 MB body of junk costs one pass at most; only a
 * small body is checked again for every error, so a client can fix them all at once.
 * Query strings, path parameters and headers are text on the wire: their numbers are coerced.
 */
import { Ajv, type ErrorObject, type Options, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';

/** The most errors one answer lists. */
export const MAX_REPORTED_ERRORS = 10;
/** Values (nodes) a body may hold to be checked again for all its errors; larger ones report the first. */
export const FULL_CHECK_MAX_NODES = 1000;

type SchemaValidator = ((data: unknown) => boolean) & { errors?: ErrorObject[] | null };

const shared: Options = {
  strict: false,
  useDefaults: true,
  removeAdditional: false,
  addUsedSchema: false,
};

// ajv-formats is CommonJS: its default export is the plugin, under `default` when loaded from ESM.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ??
  addFormatsModule) as unknown as (ajv: Ajv) => Ajv;

function instance(options: Options): Ajv {
  const ajv = new Ajv({ ...shared, ...options });
  addFormats(ajv);
  return ajv;
}

/** Whether `data` holds more than `limit` values, looked at no further than that. */
function largerThan(data: unknown, limit: number): boolean {
  let seen = 0;
  const stack: unknown[] = [data];
  while (stack.length > 0) {
    const value = stack.pop();
    seen += 1;
    if (seen > limit) return true;
    if (value !== null && typeof value === 'object') {
      for (const child of Array.isArray(value) ? value : Object.values(value)) {
        stack.push(child);
        if (stack.length + seen > limit) return true;
      }
    }
  }
  return false;
}

/** Each (place, rule) once, at most MAX_REPORTED_ERRORS of them. */
export function boundedErrors(errors: readonly ErrorObject[]): ErrorObject[] {
  const seen = new Set<string>();
  const kept: ErrorObject[] = [];
  for (const error of errors) {
    const id = `${error.instancePath}\u0000${error.keyword}\u0000${String(
      (error.params as Record<string, unknown>).additionalProperty ??
        (error.params as Record<string, unknown>).missingProperty ??
        '',
    )}`;
    if (seen.has(id)) continue;
    seen.add(id);
    kept.push(error);
    if (kept.length === MAX_REPORTED_ERRORS) break;
  }
  return kept;
}

/** Fastify's validator compiler for the gateway (see the module comment). */
export function createValidatorCompiler(): (route: { schema: object; httpPart?: string }) => SchemaValidator {
  const firstError = instance({ allErrors: false, coerceTypes: false });
  const everyError = instance({ allErrors: true, coerceTypes: false });
  const textParts = instance({ allErrors: false, coerceTypes: 'array' });
  return ({ schema, httpPart }) => {
    if (httpPart !== 'body') return textParts.compile(schema);
    const first: ValidateFunction = firstError.compile(schema);
    let every: ValidateFunction | undefined;
    const validate: SchemaValidator = (data) => {
      if (first(data)) {
        validate.errors = null;
        return true;
      }
      let errors = first.errors ?? [];
      if (!largerThan(data, FULL_CHECK_MAX_NODES)) {
        every ??= everyError.compile(schema);
        if (!every(data)) errors = every.errors ?? errors;
      }
      validate.errors = boundedErrors(errors);
      return false;
    };
    return validate;
  };
}
