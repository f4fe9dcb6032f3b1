import { MeridianError, type MeridianErrorOptions } from '../errors.ts';

/**
 * Stored data this code cannot use: above all a database whose schema of a component is newer
 * than this Meridian knows, which an old binary must not write to. Retrying cannot fix it;
 * upgrading can. Code 'SCHEMA_MISMATCH', as the log's error of the same name, so callers can test
 * one code whichever layer refused.
 */
export class SchemaMismatchError extends MeridianError {
  constructor(message: string, options: MeridianErrorOptions = {}) {
    super('SCHEMA_MISMATCH', message, options);
  }

  /** The database at `where` has `databaseVersion` of `component`; the code knows `knownVersion`. */
  static newerThanCode(
    where: string,
    component: string,
    databaseVersion: number,
    knownVersion: number,
  ): SchemaMismatchError {
    return new SchemaMismatchError(
      `The database ${where} has schema version ${databaseVersion} of '${component}', newer than this Meridian knows (${knownVersion}): upgrade Meridian or use another data directory`,
      { details: { component, databaseVersion, knownVersion } },
    );
  }
}
