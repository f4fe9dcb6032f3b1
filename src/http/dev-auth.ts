import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ValidationError } from '../errors.ts';
import { type AuthOptions, issueToken, type Role } from './auth.ts';

/** The file a data directory keeps its development signing secret in. */
export const AUTH_SECRET_FILE = 'auth-secret';

export interface DevelopmentAuth {
  /** Bearer tokens signed with the directory's secret (HS256). */
  readonly auth: AuthOptions;
  /** Where the secret is (mode 0600): anyone who can read it can mint any token. */
  readonly secretPath: string;
  /** Signs a token for a principal with the directory's secret. @default lifetime 24 h */
  issue(
    subject: string,
    role: Role,
    options?: { expiresInSeconds?: number; scopes?: readonly string[] },
  ): Promise<string>;
}

/**
 * Authentication for a single-machine deployment (the embedded demo): a random HS256 secret
 * kept in the data directory (created on first start, readable by its owner only), so tokens it
 * signed stay valid across restarts. Production deployments give the gateway their own issuer's
 * secret or API keys instead (docs/security.md).
 */
export function developmentAuth(dataDir: string): DevelopmentAuth {
  const secretPath = join(dataDir, AUTH_SECRET_FILE);
  const secret = readOrCreateSecret(secretPath);
  return {
    auth: { jwt: { secret } },
    secretPath,
    issue: (subject, role, options = {}) => issueToken({ secret, subject, role, ...options }),
  };
}

function readOrCreateSecret(path: string): string {
  try {
    writeFileSync(path, `${randomBytes(32).toString('base64url')}\n`, { flag: 'wx', mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
  const secret = readFileSync(path, 'utf8').trim();
  if (secret.length < 32) {
    throw new ValidationError(
      `The signing secret in ${path} is shorter than 32 characters: delete the file to have a new one made (tokens signed with the old one stop working)`,
    );
  }
  return secret;
}
