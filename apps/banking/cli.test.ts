// `banking` reads its port and policy switch, and rejects anything else with a clear message.
import { describe, expect, it } from 'vitest';
import { parseBankingOptions } from './cli.ts';

describe('banking options', () => {
  it('defaults to port 7080 with policies on, and reads --policies off', () => {
    expect(parseBankingOptions([])).toEqual({ port: 7080, policies: true });
    expect(parseBankingOptions(['--port', '0', '--policies', 'off'])).toEqual({ port: 0, policies: false });
    expect(parseBankingOptions(['--help'])).toBe('help');
  });

  it('rejects a bad port or policy switch', () => {
    expect(() => parseBankingOptions(['--port', '70000'])).toThrow(
      /'--port' must be an integer in \[0, 65535\]/,
    );
    expect(() => parseBankingOptions(['--policies', 'maybe'])).toThrow(/'--policies' must be 'on' or 'off'/);
  });
});
