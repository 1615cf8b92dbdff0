/**
 * Debian's stock kernel, taken from its .deb without installing it: both the
 * KVM lab's L1 machine and the sandbox guest boot it. The package is fetched
 * with `apt-get download`, unpacked with `dpkg-deb -x` into the cache, and
 * `depmod` is run on the unpacked tree so module dependencies can be resolved.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cachedDir, inputKey } from './cache.js';

const KERNEL_META_PACKAGE = 'linux-image-amd64';

export interface DebianKernel {
  /** e.g. `6.1.0-56-amd64` */
  readonly release: string;
  /** Debian package name and version, e.g. `linux-image-6.1.0-56-amd64 6.1.192-2` */
  readonly packageName: string;
  readonly packageVersion: string;
  /** The bzImage. */
  readonly vmlinuz: string;
  /** Root of the unpacked package (holds `lib/modules/<release>`). */
  readonly root: string;
}

function run(command: string, args: string[], cwd?: string): string {
  try {
    return execFileSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`${command} ${args.join(' ')} failed: ${stderr.trim() || String(error)}`, { cause: error });
  }
}

/** The concrete kernel package the meta package points at, and its version. */
function resolveKernelPackage(): { name: string; version: string } {
  const depends = run('apt-cache', ['depends', KERNEL_META_PACKAGE]);
  const name = /Depends:\s+(linux-image-\S+)/.exec(depends)?.[1];
  if (!name) {
    throw new Error(
      `cannot resolve ${KERNEL_META_PACKAGE}: run 'apt-get update' first (apt-cache found no dependency)`,
    );
  }
  const policy = run('apt-cache', ['policy', name]);
  const version = /Candidate:\s+(\S+)/.exec(policy)?.[1];
  if (!version || version === '(none)') throw new Error(`no installable version of ${name}`);
  return { name, version };
}

/** Fetches (once) and returns Debian's current amd64 kernel. */
export async function debianKernel(log: (line: string) => void = () => {}): Promise<DebianKernel> {
  const pkg = resolveKernelPackage();
  const dir = await cachedDir('debian-kernel', inputKey([pkg.name, pkg.version]), async (tmp) => {
    log(`fetching ${pkg.name} ${pkg.version} with apt-get download`);
    run('apt-get', ['download', `${pkg.name}=${pkg.version}`], tmp);
    const deb = readdirSync(tmp).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download left no .deb for ${pkg.name}`);
    run('dpkg-deb', ['-x', deb, 'root'], tmp);
    const release = readdirSync(join(tmp, 'root', 'lib', 'modules'))[0];
    if (!release) throw new Error(`${deb} holds no lib/modules`);
    run('depmod', ['-b', join(tmp, 'root'), release]);
    writeFileSync(join(tmp, 'kernel.json'), JSON.stringify({ release, package: pkg }, null, 2));
  });
  const meta = JSON.parse(readFileSync(join(dir, 'kernel.json'), 'utf8')) as { release: string };
  const vmlinuz = join(dir, 'root', 'boot', `vmlinuz-${meta.release}`);
  if (!existsSync(vmlinuz)) throw new Error(`kernel cache ${dir} is incomplete: no ${vmlinuz}`);
  return {
    release: meta.release,
    packageName: pkg.name,
    packageVersion: pkg.version,
    vmlinuz,
    root: join(dir, 'root'),
  };
}

/**
 * The module files to load, in dependency order, so that each of `names` is
 * loaded (modules built into the kernel are skipped). Duplicates removed.
 */
export function moduleLoadOrder(kernel: DebianKernel, names: readonly string[]): string[] {
  const order: string[] = [];
  for (const name of names) {
    const out = run('modprobe', ['-d', kernel.root, '-S', kernel.release, '--show-depends', name]);
    for (const line of out.split('\n')) {
      const path = /^insmod\s+(\S+)/.exec(line)?.[1];
      if (path && !order.includes(path)) order.push(path);
    }
  }
  return order;
}
