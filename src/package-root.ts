/** Where this package is installed: the nearest directory above a module that holds a package.json. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root above `dir` (a module's directory, in src/ or dist/src/), or undefined. */
export function packageRoot(dir: string = dirname(fileURLToPath(import.meta.url))): string | undefined {
  for (let d = dir; ; ) {
    if (existsSync(join(d, 'package.json'))) return d;
    const up = dirname(d);
    if (up === d) return undefined;
    d = up;
  }
}

/** The package's version (its package.json), or "unknown". */
export function packageVersion(): string {
  const root = packageRoot();
  if (root === undefined) return 'unknown';
  try {
    const v = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version?: unknown }).version;
    return typeof v === 'string' ? v : 'unknown';
  } catch {
    return 'unknown';
  }
}
