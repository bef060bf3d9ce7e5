// What dist/.stamp holds (written by deploy/build/cli.ts, read by bin/ferry.js in plain JavaScript).
export const STAMP_FILE = '.stamp';

export interface BuildStamp {
  builtAt: string;
  /** Every compiled source, relative to the repository: [path, mtimeMs, size] before compiling. */
  sources: [string, number, number][];
}
