/**
 * `npm run guest:build`: the sandbox guest from Debian bookworm packages —
 * Debian's kernel, a busybox initramfs (modules, init, agent) and a squashfs
 * rootfs — each cached by its inputs, plus a manifest (versions, sizes, hashes).
 * A second run with the same inputs only re-reads the cache.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUSYBOX_STATIC, buildBusyboxInitramfs } from './busybox-initramfs.js';
import { cachedDir, cacheRoot, inputKey } from './cache.js';
import { GUEST_BUILD_REVISION, INITRAMFS_MODULES, KERNEL_CMDLINE, ROOTFS_BUDGET_BYTES } from './config.js';
import { debianKernel } from './debian-kernel.js';
import { INITRAMFS_AGENT, INITRAMFS_STAGE2, stage1Script, stage2Script } from './guest-init.js';
import { buildRootfs } from './rootfs.js';

/** The agent's source, read from the repo (dist/guest-images/ → guest-images/agent/). */
export const AGENT_SOURCE = fileURLToPath(new URL('../../guest-images/agent/belljar-agent.pl', import.meta.url));

export interface GuestArtifact {
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
}

export interface GuestManifest {
  readonly revision: number;
  readonly kernel: GuestArtifact & { readonly package: string; readonly version: string; readonly release: string };
  readonly initramfs: GuestArtifact & { readonly modules: readonly string[] };
  readonly rootfs: GuestArtifact & { readonly packages: readonly string[] };
  readonly cmdline: readonly string[];
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function artifact(path: string): Promise<GuestArtifact> {
  return { path, bytes: statSync(path).size, sha256: await sha256File(path) };
}

/** Builds (or finds in the cache) everything the guest needs. */
export async function buildGuest(log: (line: string) => void = () => {}): Promise<GuestManifest> {
  const kernel = await debianKernel(log);
  const agent = readFileSync(AGENT_SOURCE, 'utf8');
  const stage1 = stage1Script();
  const stage2 = stage2Script();
  const busyboxHash = createHash('sha256').update(readFileSync(BUSYBOX_STATIC)).digest('hex');
  const initramfsKey = inputKey([
    GUEST_BUILD_REVISION,
    kernel.packageVersion,
    kernel.release,
    INITRAMFS_MODULES,
    stage1,
    stage2,
    agent,
    busyboxHash,
  ]);
  const initramfsDir = await cachedDir('guest-initramfs', initramfsKey, async (tmp) => {
    log('initramfs: busybox + modules + init + agent');
    const image = buildBusyboxInitramfs({
      kernel,
      modules: INITRAMFS_MODULES,
      script: stage1,
      files: { [INITRAMFS_STAGE2]: stage2, [INITRAMFS_AGENT]: agent },
    });
    writeFileSync(join(tmp, 'initramfs.cpio'), image);
  });
  const rootfs = await buildRootfs(log);

  const manifestKey = inputKey([initramfsDir, rootfs.dir, kernel.vmlinuz, KERNEL_CMDLINE]);
  const manifestDir = await cachedDir('guest', manifestKey, async (tmp) => {
    log('manifest: hashing the artifacts');
    const manifest: GuestManifest = {
      revision: GUEST_BUILD_REVISION,
      kernel: {
        ...(await artifact(kernel.vmlinuz)),
        package: kernel.packageName,
        version: kernel.packageVersion,
        release: kernel.release,
      },
      initramfs: { ...(await artifact(join(initramfsDir, 'initramfs.cpio'))), modules: INITRAMFS_MODULES },
      rootfs: { ...(await artifact(rootfs.squashfs)), packages: rootfs.packages },
      cmdline: KERNEL_CMDLINE,
    };
    writeFileSync(join(tmp, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  });
  const manifestPath = join(manifestDir, 'manifest.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as GuestManifest;
  for (const a of [manifest.kernel, manifest.initramfs, manifest.rootfs]) {
    if (!existsSync(a.path)) throw new Error(`guest cache entry is stale: ${a.path} is gone (delete ${manifestDir})`);
  }
  // Written only when it changes: a cached build stays a no-op (and works on
  // a read-only cache, as inside the KVM lab).
  const latestPath = join(cacheRoot(), 'guest', 'latest.json');
  const latest = `${JSON.stringify({ manifest: manifestPath }, null, 2)}\n`;
  if (!existsSync(latestPath) || readFileSync(latestPath, 'utf8') !== latest) writeFileSync(latestPath, latest);
  return manifest;
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

async function main(): Promise<void> {
  const started = performance.now();
  const manifest = await buildGuest((line) => console.log(line));
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`guest:build done in ${seconds} s`);
  console.log(
    `  kernel     ${manifest.kernel.path} (${manifest.kernel.package} ${manifest.kernel.version}, ${mb(manifest.kernel.bytes)})`,
  );
  console.log(`  initramfs  ${manifest.initramfs.path} (${mb(manifest.initramfs.bytes)})`);
  console.log(
    `  rootfs     ${manifest.rootfs.path} (${mb(manifest.rootfs.bytes)}, ${manifest.rootfs.packages.length} packages)`,
  );
  console.log(`  manifest   ${join(cacheRoot(), 'guest', 'latest.json')}`);
  if (manifest.rootfs.bytes > ROOTFS_BUDGET_BYTES) {
    throw new Error(`rootfs is ${mb(manifest.rootfs.bytes)}, over the ${mb(ROOTFS_BUDGET_BYTES)} budget`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((error: unknown) => {
    console.error(`guest:build failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  });
}
