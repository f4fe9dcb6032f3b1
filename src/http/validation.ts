import { HttpProblem, type InvalidField, type RequestPart } from './problem.ts';

/** The shape of one ajv error as Fastify hands it over (`error.validation`). */
export interface SchemaError {
  instancePath: string;
  keyword: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** A value longer than this (as JSON) is not echoed back in a problem: it could be a whole body. */
const MAX_ECHOED_VALUE_CHARS = 200;
/** Pointers and parameter texts are cut to this: a field name can be as long as the body. */
const MAX_NAME_CHARS = 128;

function cut(text: string): string {
  return text.length <= MAX_NAME_CHARS ? text : `${text.slice(0, MAX_NAME_CHARS)}…`;
}

/** The rule's parameters with every text cut short, and lists (allowed values) kept as the schema gave them. */
function boundedParams(params: Record<string, unknown>): Record<string, unknown> {
  const bounded: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(params))
    bounded[name] = typeof value === 'string' ? cut(value) : value;
  return bounded;
}

const parts: Record<string, RequestPart> = {
  body: 'body',
  querystring: 'query',
  params: 'path',
  headers: 'header',
};

/** Reads the value a JSON pointer names inside `root`, or undefined when the path does not exist. */
export function valueAtPointer(root: unknown, pointer: string): unknown {
  if (pointer === '') return root;
  let current: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const segment = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (current === null || typeof current !== 'object') return undefined;
    if (!Object.hasOwn(current, segment)) return undefined;
    current = (current as Record<string, unknown>)[segment];
  }
  return current;
}

function escapeSegment(segment: string): string {
  return segment.replaceAll('~', '~0').replaceAll('/', '~1');
}

function echoable(value: unknown): boolean {
  if (value === undefined) return false;
  try {
    const text = JSON.stringify(value);
    return text !== undefined && text.length <= MAX_ECHOED_VALUE_CHARS;
  } catch {
    return false;
  }
}

/**
 * Lists each invalid field of a request from the schema errors, with the rule it broke and the
 * value it had. `required` and `additionalProperties` errors point at the field itself, not at
 * the object that lacks or carries it, because that is the field the client must fix.
 */
export function invalidFields(
  context: string,
  errors: readonly SchemaError[],
  data: unknown,
): InvalidField[] {
  const part = parts[context] ?? 'body';
  return errors.map((error) => {
    let pointer = error.instancePath;
    const params = error.params ?? {};
    if (error.keyword === 'required' && typeof params.missingProperty === 'string') {
      pointer = `${pointer}/${escapeSegment(params.missingProperty)}`;
    } else if (error.keyword === 'additionalProperties' && typeof params.additionalProperty === 'string') {
      pointer = `${pointer}/${escapeSegment(params.additionalProperty)}`;
    }
    const field: InvalidField = {
      in: part,
      pointer: cut(
        part === 'header' || part === 'path' || part === 'query' ? pointer.replace(/^\//, '') : pointer,
      ),
      rule: error.keyword,
      message: cut(error.message ?? `must satisfy '${error.keyword}'`),
    };
    if (Object.keys(params).length > 0) field.params = boundedParams(params);
    const value = error.keyword === 'required' ? undefined : valueAtPointer(data, pointer);
    if (echoable(value)) field.value = value;
    return field;
  });
}

function describe(field: InvalidField): string {
  const where = field.in === 'body' ? `body${field.pointer}` : `${field.in} '${field.pointer}'`;
  const value = field.value === undefined ? '' : ` (current value is ${JSON.stringify(field.value)})`;
  return `${where} ${field.message}${value}`;
}

/** The 400 problem for a request that failed its route's schema. */
export function validationProblem(typeBase: string, fields: InvalidField[]): HttpProblem {
  const count = fields.length === 1 ? '1 invalid field' : `${fields.length} invalid fields`;
  return new HttpProblem({
    status: 400,
    title: 'The request is invalid',
    type: `${typeBase}validation-failed`,
    detail: `The request has ${count}: ${fields.map(describe).join('; ')}.`,
    extensions: { errors: fields },
  });
}
