// A redis-server of the test's own (the machine's binary, on a port from the cache tests' range
// 17007-17010), so a test can SIGKILL, restart, freeze (SIGSTOP) and thaw it without touching the
// shared Redis on 6379.
import { type ChildProcess, spawn } from 'node:child_process';
import { createConnection } from 'node:net';
import { systemTimers } from '../time.ts';

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.setTimeout(500);
    let reply = '';
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (data) => {
      reply += data.toString();
      if (reply.includes('\r\n')) {
        socket.destroy();
        resolve(reply.startsWith('+PONG'));
      }
    });
    const fail = () => {
      socket.destroy();
      resolve(false);
    };
    socket.on('error', fail);
    socket.on('timeout', fail);
  });
}

export class RedisServer {
  readonly port: number;
  #process: ChildProcess | undefined;

  constructor(port: number) {
    this.port = port;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts the server and resolves once it answers PING (bounded: 10 s). */
  async start(): Promise<void> {
    if (this.#process !== undefined) throw new Error(`redis-server on ${this.port} is already running`);
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    this.#process = child;
    for (let attempt = 0; attempt < 200; attempt++) {
      if (child.exitCode !== null) throw new Error(`redis-server on ${this.port} exited (${child.exitCode})`);
      if (await answersPing(this.port)) return;
      await new Promise<void>((resolve) => systemTimers.setTimeout(resolve, 50));
    }
    throw new Error(`redis-server on ${this.port} did not answer within 10 s`);
  }

  /** SIGKILL, as a crash: the data is gone (nothing is persisted). */
  async kill(): Promise<void> {
    const child = this.#process;
    if (child === undefined) return;
    this.#process = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  /** Freezes the server: connections stay open and nothing answers (a slow Redis). */
  freeze(): void {
    this.#process?.kill('SIGSTOP');
  }

  thaw(): void {
    this.#process?.kill('SIGCONT');
  }
}
