/**
 * Knows which methods each registered route pattern accepts, so a request for a path that
 * exists under another method gets 405 with an `Allow` header instead of a misleading 404.
 * Fastify's router answers both cases with "not found", hence this small index beside it.
 */
export class RouteMatcher {
  readonly #routes = new Map<string, { pattern: RegExp; methods: Set<string> }>();

  add(url: string, methods: readonly string[]): void {
    let entry = this.#routes.get(url);
    if (entry === undefined) {
      entry = { pattern: compile(url), methods: new Set() };
      this.#routes.set(url, entry);
    }
    for (const method of methods) {
      entry.methods.add(method.toUpperCase());
      // Fastify answers HEAD on every GET route (exposeHeadRoutes).
      if (method.toUpperCase() === 'GET') entry.methods.add('HEAD');
    }
  }

  /** The methods allowed on `path` (no query string), sorted; empty when no route matches it. */
  allowedMethods(path: string): string[] {
    const methods = new Set<string>();
    for (const entry of this.#routes.values()) {
      if (entry.pattern.test(path)) for (const method of entry.methods) methods.add(method);
    }
    return [...methods].sort();
  }
}

/** Turns a Fastify route pattern (`/orders/:orderId`, `/files/*`) into an anchored regular expression. */
function compile(url: string): RegExp {
  let source = '';
  for (const segment of url.split('/')) {
    if (source !== '' || segment !== '') source += '/';
    if (segment === '*') source += '.*';
    else if (segment.startsWith(':')) source += '[^/]+';
    else source += segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${source === '' ? '/' : source}/?$`);
}
