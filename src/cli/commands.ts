import { ensureError, isMeridianError } from '../errors.ts';

/** One subcommand: loaded on demand, so `--help` stays fast and its dependencies load only when it runs. */
export interface Command {
  summary: string;
  load: () => Promise<{ run: (argv: string[]) => Promise<number> }>;
}

function usage(program: string, commands: Record<string, Command>): string {
  const lines = Object.entries(commands).map(([name, command]) => `  ${name.padEnd(10)} ${command.summary}`);
  return `Usage: ${program} <command> [options]\n\nCommands:\n${lines.join('\n')}\n\nRun '${program} <command> --help' for a command's options.`;
}

async function dispatch(program: string, commands: Record<string, Command>, argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage(program, commands));
    return name === undefined ? 1 : 0;
  }
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (command === undefined) {
    console.error(`${program}: unknown command '${name}'.\n\n${usage(program, commands)}`);
    return 2;
  }
  const module = await command.load();
  return module.run(rest);
}

/**
 * Runs a program made of subcommands (`meridian`, an app's own tooling) and sets the exit code:
 * the command's, 1 for an unexpected error (printed with its code), 2 for an unknown command.
 */
export function runCommands(
  program: string,
  commands: Record<string, Command>,
  argv: string[] = process.argv.slice(2),
): Promise<void> {
  return dispatch(program, commands, argv).then(
    (code) => {
      process.exitCode = code;
    },
    (thrown: unknown) => {
      const error = ensureError(thrown);
      console.error(`${program}: ${isMeridianError(error) ? `${error.code}: ` : ''}${error.message}`);
      process.exitCode = 1;
    },
  );
}
