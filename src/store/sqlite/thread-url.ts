// The worker threads' files are beside this one: `.ts` in a checkout, `.js` once built (dist/).
const ownExtension = import.meta.url.endsWith('.ts') ? '.ts' : '.js';

/** The URL of a worker thread's module in this folder, named without its extension. */
export function threadUrl(name: 'checkpointer-thread' | 'storage-thread'): URL {
  return new URL(`./${name}${ownExtension}`, import.meta.url);
}
