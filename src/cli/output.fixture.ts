import type { CommandOutput } from './args.ts';

/** A command's output collected in memory for a test: the lines it wrote to each stream. */
export function captureOutput(): { output: CommandOutput; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    output: { out: (line: string) => out.push(line), err: (line: string) => err.push(line) },
    out,
    err,
  };
}
