import { ValidationError } from '../errors.ts';
import { type CommandOutput, consoleOutput, parseCommand } from './args.ts';
import {
  askNode,
  type NodeTarget,
  nodeApiFlags,
  nodeApiUsage,
  nodeTarget,
  runNodeCommand,
} from './node-api.ts';

export const INSPECT_USAGE = `Usage: meridian inspect <what> [id] [options]

Asks a running node (its console API) what an operator asks:
  sagas [--status S] [--type T]   sagas, filtered
  saga <id>                       one saga: status, calls, trace id
  topics                          topics, partitions, end offsets, consumer lag
  lag                             consumer lag per group and partition, only where it is not 0
  dead-letters                    dead letters

Options:
${nodeApiUsage}
  -h, --help`;

const whats = ['sagas', 'saga', 'topics', 'lag', 'dead-letters'] as const;
type What = (typeof whats)[number];

interface InspectOptions extends NodeTarget {
  what: What;
  id: string | undefined;
  status: string | undefined;
  type: string | undefined;
}

export function parseInspectOptions(argv: string[], env: NodeJS.ProcessEnv): InspectOptions | 'help' {
  const parsed = parseCommand(
    'meridian inspect',
    argv,
    {
      ...nodeApiFlags,
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
  return {
    ...nodeTarget(parsed.values, env),
    what: what as What,
    id,
    status: parsed.values.status,
    type: parsed.values.type,
  };
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
export function run(argv: string[], output: CommandOutput = consoleOutput): Promise<number> {
  return runNodeCommand(
    'meridian inspect',
    INSPECT_USAGE,
    output,
    () => parseInspectOptions(argv, process.env),
    async (options) => {
      const body = await askNode(options, pathOf(options));
      return options.json ? [JSON.stringify(body, null, 2)] : lines(options, body);
    },
  );
}
