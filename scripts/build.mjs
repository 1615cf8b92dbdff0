// Builds everything the app and the tests run:
// - the TypeScript of every Node-side layer (vmm, electron, test,
//   guest-images) to dist/ with esbuild, one output file per source file, so
//   worker threads and child processes start from plain .js files;
// - the preload, bundled to CommonJS (sandboxed preloads cannot be ES modules);
// - the renderer, with Vite.
// Type checking is separate (`npm run typecheck`).
import { build } from 'esbuild';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build as viteBuild } from 'vite';

const root = fileURLToPath(new URL('..', import.meta.url));
const quiet = process.argv.includes('--quiet');
const layers = ['vmm', 'electron', 'test', 'guest-images'];
const PRELOAD = join(root, 'electron', 'preload.ts');

function sources(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sources(path));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts') && path !== PRELOAD) out.push(path);
  }
  return out;
}

const started = performance.now();
const entryPoints = layers.flatMap((layer) => sources(join(root, layer)));
// Output of a source that was removed or renamed must not linger (node --test would still run a stale test).
for (const layer of layers) rmSync(join(root, 'dist', layer), { recursive: true, force: true });
await build({
  entryPoints,
  outdir: join(root, 'dist'),
  outbase: root,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'linked',
  logLevel: 'warning',
});
await build({
  entryPoints: [PRELOAD],
  outfile: join(root, 'dist', 'electron', 'preload.cjs'),
  bundle: true,
  external: ['electron'],
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  logLevel: 'warning',
});
await viteBuild({ configFile: join(root, 'renderer', 'vite.config.ts'), logLevel: 'warn' });
if (!quiet) {
  const ms = (performance.now() - started).toFixed(0);
  console.log(
    `build: ${entryPoints.length} files from ${layers.join(', ')}, the preload and the renderer → dist/ in ${ms} ms`,
  );
}
