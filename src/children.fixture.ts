// Child processes of crash tests, killed when their test file ends: a run that fails or times
// out before its own SIGKILL would otherwise leave a child appending or committing for ever,
// loading the machine under every later test.
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { afterAll } from 'vitest';

const running = new Set<ChildProcess>();

afterAll(() => {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
});

/** Spawns `node <script> ...args` with the running Node, tracked until it exits. */
export function spawnNode(script: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}
