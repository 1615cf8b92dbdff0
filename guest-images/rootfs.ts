/**
 * The guest's root filesystem: Debian bookworm `minbase` plus the viewer stack,
 * made by mmdebstrap (no container, no root-owned leftovers on the host),
 * trimmed, and packed as a zstd squashfs. Cached by its inputs: the requested
 * packages' candidate versions, the trim lists and the build revision.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cachedDir, inputKey } from './cache.js';
import {
  DEBIAN_SUITE,
  DPKG_PATH_EXCLUDES,
  DPKG_PATH_INCLUDES,
  GUEST_BUILD_REVISION,
  ROOTFS_PACKAGES,
  ROOTFS_REMOVE,
  VIEWER_USER,
} from './config.js';

/** Fixed timestamp for every file mmdebstrap and mksquashfs write (reproducible output). */
export const SOURCE_DATE_EPOCH = '1700000000';

export interface Rootfs {
  readonly squashfs: string;
  readonly bytes: number;
  /** `name version` of every installed package. */
  readonly packages: readonly string[];
  /** Where the cache entry lives. */
  readonly dir: string;
}

/** Candidate versions of `packages`, from one `apt-cache policy` call. */
export function candidateVersions(packages: readonly string[]): string[] {
  const policy = execFileSync('apt-cache', ['policy', ...packages], { encoding: 'utf8' });
  const found = new Map<string, string>();
  let current: string | undefined;
  for (const line of policy.split('\n')) {
    const head = /^(\S+):$/.exec(line);
    if (head) current = head[1];
    const candidate = /^\s+Candidate:\s+(\S+)/.exec(line);
    if (current && candidate?.[1] && candidate[1] !== '(none)') found.set(current, candidate[1]);
  }
  return packages.map((p) => {
    const version = found.get(p);
    if (!version) throw new Error(`apt-cache knows no version of ${p}: run 'apt-get update' first`);
    return `${p}=${version}`;
  });
}

/** Runs a command, streaming its output to `log` line by line; rejects on failure. */
function runLogged(
  command: string,
  args: readonly string[],
  log: (line: string) => void,
  env?: NodeJS.ProcessEnv,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    const tail: string[] = [];
    const onData = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line.trim()) continue;
        tail.push(line);
        if (tail.length > 20) tail.shift();
        log(`  ${command}: ${line}`);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} failed (${signal ?? `exit ${code}`}):\n${tail.join('\n')}`));
    });
  });
}

/** The shell run by mmdebstrap's customize hook (`$1` is the new rootfs). */
export function customizeHook(): string {
  const { name, uid, gid, home } = VIEWER_USER;
  const removals = ROOTFS_REMOVE.map((p) => `rm -rf "$1"/${p}`).join('; ');
  return [
    'set -e',
    `echo '${name}:x:${uid}:${gid}:Belljar viewer:${home}:/usr/sbin/nologin' >> "$1/etc/passwd"`,
    `echo '${name}:x:${gid}:' >> "$1/etc/group"`,
    `echo '${name}:!:19675::::::' >> "$1/etc/shadow"`,
    `mkdir -p "$1${home}" && chown ${uid}:${gid} "$1${home}" && chmod 0700 "$1${home}"`,
    ': > "$1/etc/machine-id"',
    'echo belljar > "$1/etc/hostname"',
    removals,
  ].join('; ');
}

export async function buildRootfs(log: (line: string) => void): Promise<Rootfs> {
  const versions = candidateVersions(ROOTFS_PACKAGES);
  const key = inputKey([
    GUEST_BUILD_REVISION,
    DEBIAN_SUITE,
    versions,
    DPKG_PATH_EXCLUDES,
    DPKG_PATH_INCLUDES,
    customizeHook(),
    SOURCE_DATE_EPOCH,
  ]);
  const dir = await cachedDir('guest-rootfs', key, async (tmp) => {
    const tree = join(tmp, 'tree');
    const env = { ...process.env, SOURCE_DATE_EPOCH };
    const started = performance.now();
    log(`rootfs: mmdebstrap ${DEBIAN_SUITE} minbase + ${ROOTFS_PACKAGES.join(', ')}`);
    await runLogged(
      'mmdebstrap',
      [
        '--quiet',
        '--variant=minbase',
        `--include=${ROOTFS_PACKAGES.join(',')}`,
        ...DPKG_PATH_EXCLUDES.map((p) => `--dpkgopt=path-exclude=${p}`),
        ...DPKG_PATH_INCLUDES.map((p) => `--dpkgopt=path-include=${p}`),
        '--aptopt=APT::Install-Recommends "false"',
        `--customize-hook=${customizeHook()}`,
        DEBIAN_SUITE,
        tree,
      ],
      log,
      env,
    );
    // mmdebstrap's own clean-up runs after the hooks and recreates apt's
    // list directory with a varying owner: remove it here for a reproducible image.
    for (const path of ROOTFS_REMOVE) rmSync(join(tree, path), { recursive: true, force: true });
    const packages = execFileSync(
      'dpkg-query',
      ['--admindir', join(tree, 'var/lib/dpkg'), '-W', '-f', '${Package} ${Version}\n'],
      {
        encoding: 'utf8',
      },
    )
      .trim()
      .split('\n');
    writeFileSync(join(tmp, 'packages.txt'), `${packages.join('\n')}\n`);
    log(
      `rootfs: ${packages.length} packages in ${((performance.now() - started) / 1000).toFixed(0)} s; packing squashfs (zstd)`,
    );
    await runLogged(
      'mksquashfs',
      [tree, join(tmp, 'rootfs.squashfs'), '-noappend', '-comp', 'zstd', '-no-xattrs', '-quiet', '-no-progress'],
      log,
      env,
    );
    rmSync(tree, { recursive: true, force: true });
  });
  const squashfs = join(dir, 'rootfs.squashfs');
  if (!existsSync(squashfs)) throw new Error(`rootfs cache ${dir} is incomplete`);
  return {
    squashfs,
    bytes: statSync(squashfs).size,
    packages: readFileSync(join(dir, 'packages.txt'), 'utf8').trim().split('\n'),
    dir,
  };
}
