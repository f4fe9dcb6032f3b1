// An app: defineApp refuses a malformed one at import, naming the field; a running app serves its
// routes beside the probes, and restarting it on the same directory keeps its state.
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../errors.ts';
import { Type } from '../http/index.ts';
import { entity } from '../runtime/definitions.ts';
import { startTestApp } from '../testing/index.ts';
import { type App, defineApp } from './app.ts';

const Counter = entity('Counter', {
  initial: { n: 0 },
  commands: { add: (state: { n: number }, input: { by: number }) => ({ state: { n: state.n + input.by } }) },
});

describe('defineApp', () => {
  it.each([
    [{ name: 'Shop', definitions: [] }, "An app's 'name' must be 1-63 lower-case letters"],
    [{ name: 'shop' }, "App 'shop' needs 'definitions'"],
    [
      { name: 'shop', definitions: [{}] },
      "App 'shop': definitions[0] is not an entity, saga or subscription",
    ],
    [{ name: 'shop', definitions: [], routes: 'no' }, "App 'shop': 'routes' must be a function"],
  ])('%j is refused: %s', (app, message) => {
    expect(() => defineApp(app as unknown as App)).toThrow(ValidationError);
    expect(() => defineApp(app as unknown as App)).toThrow(message);
  });
});

describe('a running app', () => {
  it('serves its routes and the probes, and keeps its state across a restart', async () => {
    const app = defineApp({
      name: 'counter',
      definitions: [Counter],
      routes(gateway, { runtime }) {
        gateway.route({
          method: 'POST',
          url: '/counters/:id',
          access: { scopes: ['counters:write'] },
          schema: { params: Type.Object({ id: Type.String({ maxLength: 64 }) }) },
          handler: async (request) => {
            await runtime.send(Counter, request.params.id, 'add', { by: 1 });
            return (await runtime.state(Counter, request.params.id))?.state;
          },
        });
      },
    });
    let running = await startTestApp(app);
    try {
      // The default on the embedded shape: development tokens signed with the directory's secret.
      const ada = await running.devAuth!.issue('ada', 'customer', { scopes: ['counters:write'] });
      const add = () =>
        fetch(`${running.url}/counters/c-1`, { method: 'POST', headers: { authorization: `Bearer ${ada}` } });
      expect((await fetch(`${running.url}/counters/c-1`, { method: 'POST' })).status).toBe(401);
      expect(await (await add()).json()).toEqual({ n: 1 });
      expect((await fetch(`${running.url}/readyz`)).status).toBe(200);
      const openapi = (await (await fetch(`${running.url}/openapi.json`)).json()) as {
        info: { title: string };
      };
      expect(openapi.info.title).toBe('counter');
      running = await running.restart();
      // The secret stays in the directory: a token issued before the restart still works.
      expect(await (await add()).json()).toEqual({ n: 2 });
    } finally {
      await running.destroy();
    }
  });
});
