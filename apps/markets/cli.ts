// `markets`: the real-time market analytics case study. `markets replay` checks the windows
// against another engine on a file; `markets demo` (the default) runs the live app.

import { parseCommandLine } from '../../src/cli/index.ts';
import { ValidationError } from '../../src/index.ts';
import { MARKETS_USAGE } from './usage.ts';

function nonNegative(option: string, text: string | undefined, fallback: number, max: number): number {
  if (text === undefined) return fallback;
  if (!/^\d{1,9}$/.test(text) || Number(text) > max) {
    throw new ValidationError(
      `'--${option}' must be an integer in [0, ${max}]: current value is '${text.slice(0, 32)}'`,
    );
  }
  return Number(text);
}

async function runReplay(argv: string[]): Promise<number> {
  const values = parseCommandLine('markets replay', argv, {
    input: { type: 'string' },
    output: { type: 'string' },
    'late-output': { type: 'string' },
    'disorder-ms': { type: 'string' },
    'allowed-lateness-ms': { type: 'string' },
  });
  if (values === 'help') {
    console.log(MARKETS_USAGE);
    return 0;
  }
  if (values.input === undefined || values.output === undefined) {
    throw new ValidationError(`'markets replay' needs '--input <trades.csv>' and '--output <windows.csv>'`);
  }
  const { replay } = await import('./replay.ts');
  const summary = await replay({
    input: values.input,
    output: values.output,
    lateOutput: values['late-output'] ?? values.output.replace(/(\.csv)?$/, '.late.csv'),
    disorderMs: nonNegative('disorder-ms', values['disorder-ms'], 2000, 86_400_000),
    allowedLatenessMs: nonNegative('allowed-lateness-ms', values['allowed-lateness-ms'], 0, 86_400_000),
  });
  console.log(`markets replay: ${summary.trades} trades, ${summary.windows} windows, ${summary.late} late`);
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === 'replay') return runReplay(rest);
  if (command === '--help' || command === '-h' || command === 'help') {
    console.log(MARKETS_USAGE);
    return 0;
  }
  const { runDemo } = await import('./demo.ts');
  return runDemo(command === 'demo' ? rest : argv);
}
