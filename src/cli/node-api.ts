import { isMeridianError, ValidationError } from '../errors.ts';
import type { CommandOutput } from './args.ts';

/*
 * What the commands that ask a running node (`meridian inspect`, `meridian cancel`) share: the
 * node's URL and an operator's token, the call to its console API, and the exit codes.
 */

/** The options every such command takes, for parseCommand. */
export const nodeApiFlags = {
  url: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** The help text of those options. */
export const nodeApiUsage = `  --url <url>       the node (default $MERIDIAN_URL, else http://127.0.0.1:7070)
  --token <token>   an operator's bearer token (default $MERIDIAN_TOKEN)
  --json            print the answer as JSON`;

export interface NodeTarget {
  readonly url: string;
  readonly token: string | undefined;
  readonly json: boolean;
}

/** The node to ask, from the parsed flags and the environment; a ValidationError for a bad URL. */
export function nodeTarget(
  values: { url?: string; token?: string; json?: boolean },
  env: NodeJS.ProcessEnv,
): NodeTarget {
  const url = values.url ?? env.MERIDIAN_URL ?? 'http://127.0.0.1:7070';
  if (!/^https?:\/\/[^\s]+$/.test(url)) {
    throw new ValidationError(`--url must be an http(s) URL: current value is '${url.slice(0, 100)}'`);
  }
  return {
    url: url.replace(/\/+$/, ''),
    token: values.token ?? env.MERIDIAN_TOKEN,
    json: values.json ?? false,
  };
}

/** GETs `path` from the node (POSTs `body` as JSON when given); its JSON answer, or a ValidationError saying why not. */
export async function askNode(
  target: NodeTarget,
  path: string,
  body?: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const response = await fetch(`${target.url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: {
      ...(target.token === undefined ? {} : { authorization: `Bearer ${target.token}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(10_000),
  });
  const answer = (await response.json().catch(() => ({}))) as Record<string, unknown>;
  if (!response.ok) {
    throw new ValidationError(
      `${target.url}${path} answered ${response.status}: ${String(answer.detail ?? answer.title ?? '')}${response.status === 401 ? ' (pass an operator token with --token or MERIDIAN_TOKEN)' : ''}`,
    );
  }
  return answer;
}

/**
 * Runs a command that asks a node: `parse` the arguments (exit 2 with the usage when they are
 * bad), `act` on the node (exit 1 when it refused or could not be reached), print what it
 * returns (exit 0).
 */
export async function runNodeCommand<O>(
  name: string,
  usage: string,
  output: CommandOutput,
  parse: () => O | 'help',
  act: (options: O) => Promise<string[]>,
): Promise<number> {
  let options: O | 'help';
  try {
    options = parse();
  } catch (error) {
    if (!isMeridianError(error)) throw error;
    output.err(`${error.message}\n\n${usage}`);
    return 2;
  }
  if (options === 'help') {
    output.out(usage);
    return 0;
  }
  let lines: string[];
  try {
    lines = await act(options);
  } catch (error) {
    output.err(`${name}: ${(error as Error).message}`);
    return 1;
  }
  for (const line of lines) output.out(line);
  return 0;
}
