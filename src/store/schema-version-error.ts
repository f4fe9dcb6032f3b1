import { ValidationError } from '../errors.ts';

/**
 * The database holds a newer schema of a component than this Meridian knows: an old binary
 * must not write to it. A ValidationError (never retried): retrying cannot fix it, upgrading can.
 */
export class SchemaVersionError extends ValidationError {
  readonly component: string;
  readonly databaseVersion: number;
  readonly knownVersion: number;

  constructor(where: string, component: string, databaseVersion: number, knownVersion: number) {
    super(
      `The database ${where} has schema version ${databaseVersion} of '${component}', newer than this Meridian knows (${knownVersion}): upgrade Meridian or use another data directory`,
      { details: { component, databaseVersion, knownVersion } },
    );
    this.component = component;
    this.databaseVersion = databaseVersion;
    this.knownVersion = knownVersion;
  }
}
