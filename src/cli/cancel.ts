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

export const CANCEL_USAGE = `Usage: meridian cancel <saga-id> [--reason R] [options]

Asks a running node (any node of a cluster) to cancel a saga: it stops at its next durable
boundary, compensates its finished steps and ends 'cancelled'. Prints 'requested', or
'duplicate' when it was asked before or the saga already ended cancelled; a saga that ended
otherwise is refused (exit 1).

Options:
  --reason <text>   why (1 to 500 characters; default 'cancelled by request')
${nodeApiUsage}
  -h, --help`;

interface CancelOptions extends NodeTarget {
  readonly sagaId: string;
  readonly reason: string | undefined;
}

export function parseCancelOptions(argv: string[], env: NodeJS.ProcessEnv): CancelOptions | 'help' {
  const parsed = parseCommand('meridian cancel', argv, { ...nodeApiFlags, reason: { type: 'string' } }, [
    'saga-id',
  ]);
  if (parsed === 'help') return 'help';
  const [sagaId] = parsed.positionals;
  if (sagaId === undefined || sagaId === '') throw new ValidationError('meridian cancel needs a saga id');
  const reason = parsed.values.reason;
  if (reason !== undefined && (reason.length === 0 || reason.length > 500)) {
    throw new ValidationError(`--reason must be 1 to 500 characters: current value is ${reason.length} long`);
  }
  return { ...nodeTarget(parsed.values, env), sagaId, reason };
}

/** `meridian cancel`: exit 0 with what it did, 1 when the node refused or could not be reached, 2 for bad options. */
export function run(argv: string[], output: CommandOutput = consoleOutput): Promise<number> {
  return runNodeCommand(
    'meridian cancel',
    CANCEL_USAGE,
    output,
    () => parseCancelOptions(argv, process.env),
    async (options) => {
      const body = await askNode(
        options,
        `/console/api/sagas/${encodeURIComponent(options.sagaId)}/cancel`,
        options.reason === undefined ? {} : { reason: options.reason },
      );
      return [
        options.json ? JSON.stringify(body, null, 2) : `${options.sagaId}\t${String(body.cancellation)}`,
      ];
    },
  );
}
