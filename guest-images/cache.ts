/**
 * The build cache: downloads and build outputs live outside the repo, under
 * `$BELLJAR_CACHE` (default `~/.cache/belljar`), in folders named by a hash of
 * their inputs, so a second run with the same inputs reuses them.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export function cacheRoot(): string {
  return process.env['BELLJAR_CACHE'] ?? join(homedir(), '.cache', 'belljar');
}

/** A short, stable key for a list of inputs (versions, file hashes, options). */
export function inputKey(parts: readonly unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}

/**
 * Returns `<cacheRoot>/<kind>/<key>`, building it first with `build(tmpDir)`
 * when absent. The build writes into a temporary sibling that is renamed into
 * place only on success, so an interrupted build never leaves a half-made entry.
 */
export async function cachedDir(kind: string, key: string, build: (dir: string) => Promise<void>): Promise<string> {
  const dir = join(cacheRoot(), kind, key);
  if (existsSync(dir)) return dir;
  const tmp = `${dir}.partial-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    await build(tmp);
    renameSync(tmp, dir);
  } catch (error) {
    rmSync(tmp, { recursive: true, force: true });
    throw error;
  }
  return dir;
}
