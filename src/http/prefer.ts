/**
 * The `Prefer` request header (RFC 7240): what a client would like, which a server may ignore.
 * Meridian reads `wait=<seconds>` from it: a long poll, "answer once there is news, or after
 * this long". Preferences it does not know, and malformed ones, are ignored, as the RFC asks.
 */
export const PREFER_HEADER = 'prefer';
export const PREFERENCE_APPLIED_HEADER = 'preference-applied';

/**
 * The `wait` preference in seconds, capped at `maxSeconds`; undefined when the header is absent,
 * carries no `wait`, or its value is not a whole number of seconds. With several `wait`s the
 * first counts (RFC 7240 §2). Accepts one header value or Node's array of repeated headers.
 */
export function preferredWaitSeconds(
  header: string | readonly string[] | undefined,
  maxSeconds: number,
): number | undefined {
  if (header === undefined) return undefined;
  const values = typeof header === 'string' ? [header] : header;
  for (const value of values) {
    for (const preference of value.split(',')) {
      // A preference is `token [= value] *( ; parameter )`; only the token and value matter here.
      const [head = ''] = preference.split(';');
      const equals = head.indexOf('=');
      const name = (equals === -1 ? head : head.slice(0, equals)).trim().toLowerCase();
      if (name !== 'wait') continue;
      if (equals === -1) return undefined;
      const raw = head
        .slice(equals + 1)
        .trim()
        .replace(/^"(.*)"$/, '$1');
      if (!/^\d{1,9}$/.test(raw)) return undefined;
      return Math.min(Number(raw), maxSeconds);
    }
  }
  return undefined;
}
