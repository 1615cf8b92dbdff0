/**
 * The KVM lab's L1 machine: QEMU with a software CPU that emulates an AMD CPU
 * with SVM and nested paging, booting Debian's kernel with a busybox
 * initramfs that loads KVM. The host's root is shared read-only over 9p and
 * becomes L1's root (chroot), so Node, node_modules and the repo are the same
 * inside and out; the working directory is shared writable on top of it.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildBusyboxInitramfs, BUSYBOX_STATIC } from '../../guest-images/busybox-initramfs.js';
import { cachedDir, inputKey } from '../../guest-images/cache.js';
import { debianKernel, type DebianKernel } from '../../guest-images/debian-kernel.js';
import { hostTscKhz } from '../../guest-images/qemu.js';

/**
 * L1 needs KVM for AMD, 9p over virtio-mmio to see the host, virtio-net for
 * the ports a test forwards from the host (QEMU user networking), and
 * pvpanic-mmio, which also drives QEMU's ISA pvpanic (ACPI QEMU0001, an I/O
 * port): how L1 tells QEMU it panicked.
 */
export const L1_MODULES = ['kvm-amd', 'virtio_mmio', '9pnet_virtio', '9p', 'virtio_net', 'pvpanic-mmio'] as const;

/**
 * QEMU's exit status when L1 panics (`-action panic=exit-failure`, through
 * pvpanic): the lab knows at once, with no guessing from console text (a
 * test's output may quote a guest's panic).
 */
export const QEMU_EXIT_L1_PANICKED = 1;

/** L1's address on QEMU's user network (its fixed default), where forwarded ports arrive. */
export const L1_GUEST_ADDRESS = '10.0.2.15';
const L1_GUEST_PREFIX = 24;

/** 9p mount tags, and the paths inside L1. */
export const SHARE = {
  hostRoot: 'hostroot',
  workDir: 'workdir',
  control: 'labctl',
} as const;

/** Per-run control files in the control share. */
export const CONTROL_FILES = {
  env: 'env.sh',
  command: 'command.sh',
  exitCode: 'exit-code',
  /** L1's kernel text symbols, written when env.sh asks (LAB_WANT_SYMBOLS=1); see l1-cpu-state.ts. */
  symbols: 'kallsyms',
  /** Written as the command starts: an L1 that restarted (it has, after a panic) must not run it again. */
  started: 'command-started',
} as const;

/** What L1 prints when it finds it has restarted in the middle of a run. */
export const L1_RESTARTED = 'lab: L1 restarted during the run; not running the command again';

/**
 * The host asks L1 for its stacks by writing a line to L1's serial console
 * (QEMU's stdin), not through a share: a hung 9p share is one of the things
 * the stacks should show, and it would swallow a request sent through it.
 */
export const DUMP_REQUEST = '\n';

/** Larger 9p messages make reads of node_modules much faster. */
const NINEP_OPTIONS = 'trans=virtio,version=9p2000.L,msize=262144';

/**
 * L1's /init (after the modules load): mount the shares, build the chroot,
 * run the command, record its exit code, power off. Always powers off, even
 * when a step fails, so QEMU exits.
 */
const L1_INIT = `
set -u
# Silence the console before powering off: the kernel's "Power down" is not the command's output.
finish() { echo "\${1:-125}" > /lab/${CONTROL_FILES.exitCode}; sync; echo 0 > /proc/sys/kernel/printk; poweroff -f; }
mkdir -p /newroot /lab
# Loopback for local servers (the egress proxy's test fixtures); eth0 only when ports are forwarded.
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then ip link set eth0 up && ip addr add ${L1_GUEST_ADDRESS}/${L1_GUEST_PREFIX} dev eth0; fi
mount -t 9p -o ${NINEP_OPTIONS} ${SHARE.control} /lab || { echo "lab: cannot mount control share"; poweroff -f; }
mount -t 9p -o ${NINEP_OPTIONS},ro,cache=loose ${SHARE.hostRoot} /newroot || { echo "lab: cannot mount host root"; finish 125; }
. /lab/${CONTROL_FILES.env}
# Text symbols, kvm's included: L1 boots unrandomized and loads the same modules in the same order, so they hold for every run.
if [ "\${LAB_WANT_SYMBOLS:-}" = 1 ]; then grep ' [tT] ' /proc/kallsyms > /lab/${CONTROL_FILES.symbols}.part && mv /lab/${CONTROL_FILES.symbols}.part /lab/${CONTROL_FILES.symbols}; fi
# When the host finds the command hung, it sends a line on the console: print the stacks of every CPU and of blocked tasks.
( read -r _ < /dev/ttyS0 && { echo 7 > /proc/sys/kernel/printk; echo l > /proc/sysrq-trigger; echo w > /proc/sysrq-trigger; } ) &
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
mount -t tmpfs tmpfs /newroot/tmp
mount -t tmpfs tmpfs /newroot/run
# The working directory last: it may lie under one of the tmpfs mounts above (a clone in /tmp).
mkdir -p "/newroot$LAB_CWD" 2>/dev/null
mount -t 9p -o ${NINEP_OPTIONS} ${SHARE.workDir} "/newroot$LAB_CWD" || { echo "lab: cannot mount $LAB_CWD"; finish 125; }
[ -e /lab/${CONTROL_FILES.started} ] && { echo "${L1_RESTARTED}"; finish 125; }
: > /lab/${CONTROL_FILES.started}
cp /lab/${CONTROL_FILES.command} /newroot/tmp/.belljar-lab-command.sh
[ -e /dev/kvm ] || echo "lab: warning: /dev/kvm did not appear in L1"
chroot /newroot /bin/sh /tmp/.belljar-lab-command.sh < /dev/null
finish $?
`;

export interface L1Image {
  readonly kernel: DebianKernel;
  readonly initramfs: string;
  /** L1's kernel text symbols, once a run has recorded them (Debian's System.map is a stub). */
  readonly symbols: string;
}

/** Builds (once per kernel, busybox and init script) the L1 kernel and initramfs. */
export async function l1Image(log: (line: string) => void): Promise<L1Image> {
  const kernel = await debianKernel(log);
  const busyboxHash = existsSync(BUSYBOX_STATIC)
    ? createHash('sha256').update(readFileSync(BUSYBOX_STATIC)).digest('hex')
    : 'missing';
  const key = inputKey([kernel.packageName, kernel.packageVersion, busyboxHash, L1_MODULES, L1_INIT]);
  const dir = await cachedDir('lab-l1', key, async (tmp) => {
    log('building the lab initramfs');
    const image = buildBusyboxInitramfs({ kernel, modules: L1_MODULES, script: L1_INIT });
    writeFileSync(join(tmp, 'initramfs.cpio'), image);
  });
  return { kernel, initramfs: join(dir, 'initramfs.cpio'), symbols: join(dir, 'kallsyms.txt') };
}

export interface L1MachineOptions {
  readonly image: L1Image;
  readonly workDir: string;
  readonly controlDir: string;
  readonly memoryMiB: number;
  readonly cpus: number;
  /** TCP ports forwarded from the host's 127.0.0.1 to the same port on L1 (for a browser outside). */
  readonly forwardPorts?: readonly number[];
  /** A Unix socket for QEMU's human monitor (to read L1's CPU state when it stops answering). */
  readonly monitorSocket?: string;
}

/** The QEMU command line for L1. */
export function l1QemuArgs(options: L1MachineOptions): string[] {
  const { image, workDir, controlDir } = options;
  const tscKhz = hostTscKhz();
  const share = (id: string, path: string, tag: string, readonly: boolean) => [
    '-fsdev',
    // multidevs=remap: the host root spans several filesystems; without it their
    // inode numbers collide in L1 (and /proc and /sys look like one directory).
    `local,id=${id},path=${path},security_model=none,multidevs=remap${readonly ? ',readonly=on' : ''}`,
    '-device',
    `virtio-9p-device,fsdev=${id},mount_tag=${tag}`,
  ];
  return [
    '-M',
    'microvm,acpi=on,rtc=on',
    '-accel',
    'tcg,thread=multi',
    '-cpu',
    'EPYC-Rome,+svm,+npt',
    '-smp',
    String(options.cpus),
    '-m',
    `${options.memoryMiB}M`,
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-no-reboot',
    '-device',
    'pvpanic',
    '-action',
    'panic=exit-failure',
    '-serial',
    'stdio',
    ...(options.monitorSocket ? ['-monitor', `unix:${options.monitorSocket},server=on,wait=off`] : []),
    '-kernel',
    image.kernel.vmlinuz,
    '-initrd',
    image.initramfs,
    '-append',
    // nokaslr: L1's addresses then match the symbols recorded once (see l1-cpu-state.ts).
    // panic=0: a panicked L1 does not reboot (that would run the command again, and
    // QEMU's -no-reboot has not always ended it); pvpanic makes QEMU exit instead.
    `console=ttyS0 quiet loglevel=3 panic=0 8250.nr_uarts=1 mitigations=off nokaslr${tscKhz ? ` tsc_early_khz=${tscKhz}` : ''}`,
    ...share('root', '/', SHARE.hostRoot, true),
    ...share('work', workDir, SHARE.workDir, false),
    ...share('ctl', controlDir, SHARE.control, false),
    ...network(options.forwardPorts ?? []),
  ];
}

/**
 * QEMU user networking with `restrict=on`: L1 reaches neither the host nor
 * the outside; only the listed host ports (bound to the host's loopback) are
 * forwarded in.
 */
function network(ports: readonly number[]): string[] {
  if (ports.length === 0) return [];
  const forwards = ports.map((port) => `hostfwd=tcp:127.0.0.1:${port}-${L1_GUEST_ADDRESS}:${port}`);
  return [
    '-netdev',
    ['user', 'id=net0', 'restrict=on', ...forwards].join(','),
    '-device',
    'virtio-net-device,netdev=net0',
  ];
}
