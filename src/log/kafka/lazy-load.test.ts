// The embedded shape never loads the Kafka client: importing `meridian/kafka` (and even creating a
// KafkaLog) resolves nothing from @platformatic/kafka until the KafkaLog is first used.
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const kafkaEntry = pathToFileURL(resolve(import.meta.dirname, 'index.ts')).href;

/** Runs `body` in a fresh Node process that records every module specifier it resolves. */
function resolvedSpecifiers(body: string): string[] {
  const script = `
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ resolve(specifier, context, next) { seen.push(specifier); return next(specifier, context); } });
    const log = await import(${JSON.stringify(kafkaEntry)});
    ${body}
    process.stdout.write(JSON.stringify(seen));
  `;
  const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  return JSON.parse(output) as string[];
}

describe('loading the kafka backend', () => {
  it('importing meridian/kafka and creating a KafkaLog loads no Kafka client code', () => {
    const seen = resolvedSpecifiers("new log.KafkaLog({ brokers: ['127.0.0.1:1'] });");
    expect(seen.some((specifier) => specifier.includes('.ts'))).toBe(true);
    expect(seen.filter((specifier) => specifier.includes('@platformatic/kafka'))).toEqual([]);
  });

  it('the first use of a KafkaLog loads the client', () => {
    // connect() fails at once (nothing listens on port 1) but has to load the client first.
    const seen = resolvedSpecifiers(
      "const kafka = new log.KafkaLog({ brokers: ['127.0.0.1:1'], retries: 0, connectTimeoutMs: 500 }); await kafka.connect().catch(() => {}); await kafka.close();",
    );
    expect(seen).toContain('@platformatic/kafka');
  });
});
