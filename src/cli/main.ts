#!/usr/bin/env node
// The `meridian` command. Each subcommand lives in its own file and is loaded on demand, so
// `meridian --help` stays fast and a subcommand's dependencies load only when it runs.
import { ensureError, isMeridianError } from '../errors.ts';

interface Command {
  summary: string;
  load: () => Promise<{ run: (argv: string[]) => Promise<number> }>;
}

const commands: Record<string, Command> = {
  demo: { summary: 'Run the demo on the embedded shape (npm start)', load: () => import('./demo.ts') },
  node: {
    summary: 'Run the commerce app as one node of a cluster (PostgreSQL + Kafka)',
    load: () => import('./node.ts'),
  },
  payments: {
    summary: 'Run the simulated payment gateway the nodes of a cluster share',
    load: () => import('./payments.ts'),
  },
  banking: {
    summary: 'Run the banking case study gateway (--policies on|off)',
    load: () => import('./banking.ts'),
  },
  load: {
    summary: 'Offer orders to a running commerce gateway at a fixed rate',
    load: () => import('./load.ts'),
  },
};

function usage(): string {
  const lines = Object.entries(commands).map(([name, command]) => `  ${name.padEnd(10)} ${command.summary}`);
  return `Usage: meridian <command> [options]\n\nCommands:\n${lines.join('\n')}\n\nRun 'meridian <command> --help' for a command's options.`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name === undefined ? 1 : 0;
  }
  const command = commands[name];
  if (command === undefined) {
    console.error(`meridian: unknown command '${name}'.\n\n${usage()}`);
    return 2;
  }
  const module = await command.load();
  return module.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (thrown: unknown) => {
    const error = ensureError(thrown);
    console.error(`meridian: ${isMeridianError(error) ? `${error.code}: ` : ''}${error.message}`);
    process.exitCode = 1;
  },
);
