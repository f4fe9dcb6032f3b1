import { isMeridianError, ValidationError } from '../errors.ts';
import { type CommandOutput, consoleOutput, parseCommand } from './args.ts';

export const INSPECT_USAGE = `Usage: meridian inspect <what> [id] [options]

Asks a running node (its console API) what an operator asks:
  sagas [--status S] [--type T]   sagas, filtered
  saga <id>                       one saga: status, calls, trace id
  topics                          topics, partitions, end offsets, consumer lag
  lag                             consumer lag per group and partition, only where it is not 0
  dead-letters                    dead letters

Options:
  --url <url>       the node (default $MERIDIAN_URL, else http://127.0.0.1:7070)
  --token <token>   an operator's bearer token (default $MERIDIAN_TOKEN)
  --json            print the answer as JSON
  -h, --help`;

const whats = ['sagas', 'saga', 'topics', 'lag', 'dead-letters'] as const;
type What = (typeof whats)[number];

interface InspectOptions {
  what: What;
  id: string | undefined;
  url: string;
  token: string | undefined;
  json: boolean;
  status: string | undefined;
  type: string | undefined;
}

export function parseInspectOptions(argv: string[], env: NodeJS.ProcessEnv): InspectOptions | 'help' {
  const parsed = parseCommand(
    'meridian inspect',
    argv,
    {
      url: { type: 'string' },
      token: { type: 'string' },
      json: { type: 'boolean' },
      status: { type: 'string' },
      type: { type: 'string' },
    },
    ['what', 'id'],
  );
  if (parsed === 'help') return 'help';
  const [what, id] = parsed.positionals;
  if (!(whats as readonly string[]).includes(what ?? '')) {
    throw new ValidationError(
      `meridian inspect needs what to show: one of ${whats.join(', ')}; current value is '${what ?? ''}'`,
    );
  }
  if (what === 'saga' && (id === undefined || id === ''))
    throw new ValidationError('meridian inspect saga needs a saga id');
  const url = parsed.values.url ?? env.MERIDIAN_URL ?? 'http://127.0.0.1:7070';
  if (!/^https?:\/\/[^\s]+$/.test(url)) {
    throw new ValidationError(`--url must be an http(s) URL: current value is '${url.slice(0, 100)}'`);
  }
  return {
    what: what as What,
    id,
    url: url.replace(/\/+$/, ''),
    token: parsed.values.token ?? env.MERIDIAN_TOKEN,
    json: parsed.values.json ?? false,
    status: parsed.values.status,
    type: parsed.values.type,
  };
}

async function ask(options: InspectOptions, path: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${options.url}${path}`, {
    headers: options.token === undefined ? {} : { authorization: `Bearer ${options.token}` },
    signal: AbortSignal.timeout(10_000),
  });
  const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
  if (!response.ok) {
    throw new ValidationError(
      `${options.url}${path} answered ${response.status}: ${String(body.detail ?? body.title ?? '')}${response.status === 401 ? ' (pass an operator token with --token or MERIDIAN_TOKEN)' : ''}`,
    );
  }
  return body;
}

function pathOf(options: InspectOptions): string {
  switch (options.what) {
    case 'sagas': {
      const query = new URLSearchParams({
        limit: '500',
        ...(options.status === undefined ? {} : { status: options.status }),
        ...(options.type === undefined ? {} : { type: options.type }),
      });
      return `/console/api/sagas?${query}`;
    }
    case 'saga':
      return `/console/api/sagas/${encodeURIComponent(options.id!)}`;
    case 'topics':
    case 'lag':
      return '/console/api/topics';
    case 'dead-letters':
      return '/console/api/dead-letters';
  }
}

type Row = Record<string, unknown>;

function lines(options: InspectOptions, body: Row): string[] {
  const table = (rows: Row[], columns: string[]) => [
    columns.join('\t'),
    ...rows.map((row) => columns.map((column) => String(row[column] ?? '')).join('\t')),
  ];
  switch (options.what) {
    case 'sagas':
      return table(body.sagas as Row[], ['id', 'type', 'status', 'reason']);
    case 'saga': {
      const progress = body.progress as Row & { calls: Row[] };
      return [
        `${progress.id}\t${progress.type}\t${progress.status}${progress.reason ? `\t${progress.reason}` : ''}`,
        `trace ${body.traceId ?? '-'}`,
        ...table(progress.calls, ['kind', 'name', 'entity', 'command', 'status', 'attempts', 'error']),
      ];
    }
    case 'topics':
    case 'lag': {
      const rows: Row[] = [];
      for (const topic of body.topics as Array<{
        topic: string;
        partitions: Array<Row & { groups: Row[] }>;
      }>) {
        for (const partition of topic.partitions) {
          const groups = partition.groups.length === 0 ? [{}] : partition.groups;
          for (const group of groups) {
            if (options.what === 'lag' && !((group.lag as number) > 0)) continue;
            rows.push({ topic: topic.topic, ...partition, ...group });
          }
        }
      }
      return table(rows, ['topic', 'partition', 'start', 'end', 'group', 'committed', 'lag']);
    }
    case 'dead-letters':
      return table(body.deadLetters as Row[], [
        'subscription',
        'topic',
        'partition',
        'offset',
        'attempts',
        'error',
      ]);
  }
}

/** `meridian inspect`: exit 0 with the answer, 1 when the node refused or could not be reached, 2 for bad options. */
export async function run(argv: string[], output: CommandOutput = consoleOutput): Promise<number> {
  let options: InspectOptions | 'help';
  try {
    options = parseInspectOptions(argv, process.env);
  } catch (error) {
    if (!isMeridianError(error)) throw error;
    output.err(`${error.message}\n\n${INSPECT_USAGE}`);
    return 2;
  }
  if (options === 'help') {
    output.out(INSPECT_USAGE);
    return 0;
  }
  let body: Row;
  try {
    body = await ask(options, pathOf(options));
  } catch (error) {
    output.err(`meridian inspect: ${(error as Error).message}`);
    return 1;
  }
  if (options.json) output.out(JSON.stringify(body, null, 2));
  else for (const line of lines(options, body)) output.out(line);
  return 0;
}
