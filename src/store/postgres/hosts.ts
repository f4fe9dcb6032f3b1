// Several PostgreSQL servers in one connection string, as libpq takes them
// (`postgres://user@host1:5442,host2:5443/db?target_session_attrs=read-write`): each new
// connection goes to the server that last accepted writes, and moves on to the next one when
// that server refuses the connection or turns out to be a standby. node-postgres (pg 8) takes
// one host only and has no `target_session_attrs`, hence this parser and failover-client.ts.
// No pg import here: the CLI validates --pg with it without loading pg.

import { ValidationError } from '../../errors.ts';

export interface PostgresHost {
  readonly host: string;
  readonly port: number;
}

export interface PostgresTarget {
  /** The connection string with only the first host, for everything pg parses itself. */
  readonly url: string;
  readonly hosts: readonly PostgresHost[];
  /** Only a server that accepts writes will do (`target_session_attrs=read-write`, the default with several hosts). */
  readonly writable: boolean;
}

const maxHosts = 16;
const urlShape = /^(postgres(?:ql)?:\/\/)([^@/?#]*@)?([^/?#]*)(.*)$/;
const hostShape = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/;

function invalid(url: string, why: string): ValidationError {
  const shown = url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@').slice(0, 200);
  return new ValidationError(
    `PostgreSQL connection string '${shown}' ${why}: write postgres://user@host1:5432,host2:5432/database (several hosts, comma-separated)`,
  );
}

/** Splits a connection string into its hosts; a single-host string passes through unchanged. */
export function parsePostgresTarget(url: string): PostgresTarget {
  const match = urlShape.exec(url);
  if (match === null) return { url, hosts: [], writable: false };
  const [, scheme, user = '', hostList = '', rest = ''] = match;
  const hosts = hostList.split(',').map((entry) => {
    const parts = hostShape.exec(entry.trim());
    if (parts === null) throw invalid(url, `names a host '${entry.slice(0, 64)}' that is not host[:port]`);
    const port = parts[2] === undefined ? 5432 : Number(parts[2]);
    if (port < 1 || port > 65_535) throw invalid(url, `names port ${port}, outside 1..65535`);
    return { host: parts[1]?.replace(/^\[|\]$/g, '') ?? '', port };
  });
  if (hosts.length > maxHosts) throw invalid(url, `names ${hosts.length} hosts, more than ${maxHosts}`);
  const query = new URLSearchParams(rest.includes('?') ? rest.slice(rest.indexOf('?') + 1) : '');
  const attrs = query.get('target_session_attrs') ?? (hosts.length > 1 ? 'read-write' : 'any');
  if (attrs !== 'read-write' && attrs !== 'any') {
    throw invalid(
      url,
      `asks for target_session_attrs=${attrs.slice(0, 32)}; 'read-write' and 'any' are supported`,
    );
  }
  query.delete('target_session_attrs');
  const path = rest.includes('?') ? rest.slice(0, rest.indexOf('?')) : rest;
  const search = query.size > 0 ? `?${query}` : '';
  const first = hostList.split(',')[0] ?? '';
  return { url: `${scheme}${user}${first}${path}${search}`, hosts, writable: attrs === 'read-write' };
}

/** The same connection string naming one host of the target instead of its list. */
export function postgresUrlFor(target: PostgresTarget, host: PostgresHost): string {
  const shown = host.host.includes(':') ? `[${host.host}]` : host.host;
  return target.url.replace(/^(postgres(?:ql)?:\/\/(?:[^@/?#]*@)?)[^/?#]*/, `$1${shown}:${host.port}`);
}
