/**
 * `meridian/cli`: the pieces the `meridian` command is made of, for an app's own commands (its
 * load generator, its admin tools): subcommands loaded on demand, and option parsing whose
 * errors name the option, the rule and the value.
 */
export {
  type CommandOutput,
  choice,
  consoleOutput,
  integer,
  number,
  type ParsedCommand,
  type ParsedValues,
  parseCommand,
  parseCommandLine,
  port,
} from './args.ts';
export { type Command, runCommands } from './commands.ts';
