/**
 * The VMM command line on bad input: every case runs the real CLI in a child
 * process and checks the exit code, one clear `vmm: ` message and no stack
 * trace, that the input files are unchanged and that nothing was left in the
 * VMM's temporary directory. None needs a working KVM: each fails before a
 * guest could run (bad input is rejected before KVM is touched; the KVM cases
 * use a device path that is not KVM).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  KernelLoadError,
  XLF_CAN_BE_LOADED_ABOVE_4G,
  XLF_KERNEL_64,
  parseBzImage,
} from '../../vmm/arch/x86_64/kernel-loader.js';
import { EXIT_CODE } from '../../vmm/exit-codes.js';
import { cpuHardwareVirtualization } from '../../vmm/kvm/host.js';

/** dist/test/unit/vmm-cli.test.js → dist/vmm/cli.js */
const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'vmm', 'cli.js');
const MiB = 1024 * 1024;
/** Long enough for a slow machine, short enough that a VM started by mistake does not hang the suite. */
const RUN_TIMEOUT_MS = 60_000;

const work = mkdtempSync(join(tmpdir(), 'vmm-cli-test-'));
/**
 * The child's TMPDIR, so its os.tmpdir(): anything the VMM created there
 * (belljar* or else) would show up. Checked empty after every run. The shared
 * os.tmpdir() cannot be checked the same way: other test files create
 * belljar-* directories there concurrently.
 */
const childTmp = join(work, 'tmp');
mkdirSync(childTmp);
after(() => rmSync(work, { recursive: true, force: true }));

function input(name: string, bytes: Uint8Array): string {
  const path = join(work, name);
  writeFileSync(path, bytes);
  return path;
}

/** A synthetic bzImage that passes parseBzImage: protocol 2.15, 64-bit entry, sizes consistent. */
function bzImage(options: { truncateBy?: number } = {}): Uint8Array {
  const setupSects = 4;
  const kernelBytes = 0x4000;
  const setupSize = (setupSects + 1) * 512;
  const file = new Uint8Array(setupSize + kernelBytes);
  const v = new DataView(file.buffer);
  v.setUint8(0x1f1, setupSects);
  v.setUint32(0x1f4, kernelBytes / 16, true); // syssize, in 16-byte paragraphs
  v.setUint16(0x1fe, 0xaa55, true); // boot_flag
  v.setUint8(0x200, 0xeb); // jmp …
  v.setUint8(0x201, 0x6a); // … over the header, which ends at 0x26c
  v.setUint32(0x202, 0x53726448, true); // "HdrS"
  v.setUint16(0x206, 0x020f, true); // boot protocol 2.15
  v.setUint8(0x211, 0x01); // loadflags: LOADED_HIGH
  v.setUint32(0x22c, 0x7fffffff, true); // initrd_addr_max
  v.setUint32(0x230, 0x200000, true); // kernel_alignment
  v.setUint8(0x234, 1); // relocatable_kernel
  v.setUint16(0x236, XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G, true);
  v.setUint32(0x238, 2047, true); // cmdline_size
  v.setBigUint64(0x258, 0x1000000n, true); // pref_address
  v.setUint32(0x260, 0x20000, true); // init_size
  for (let i = 0; i < kernelBytes; i++) file[setupSize + i] = 0xf4; // hlt
  return options.truncateBy ? file.subarray(0, file.length - options.truncateBy) : file;
}

/** Deterministic noise (no "HdrS" at 0x202, no ELF magic): a file that is not a kernel. */
function noise(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = 0x1234_5678;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
    bytes[i] = state >>> 24;
  }
  return bytes;
}

const kernel = input('bzImage', bzImage());
const truncatedKernel = input('bzImage-truncated', bzImage({ truncateBy: 100 }));
const notKernel = input('random.bin', noise(64 * 1024));
const emptyFile = input('empty', new Uint8Array(0));
const disk = input('disk.img', noise(MiB));
const kvmNotADevice = input('not-kvm', new Uint8Array(0));
const kvmDirectory = join(work, 'kvm-dir');
mkdirSync(kvmDirectory);
/** 40 MiB, sparse: more than a 32 MiB guest has. */
const bigInitrd = join(work, 'initrd-40m');
writeFileSync(bigInitrd, '');
truncateSync(bigInitrd, 40 * MiB);
const missing = join(work, 'does-not-exist');

interface FileState {
  readonly size: number;
  readonly mtimeMs: number;
  readonly mode: number;
  readonly sha256: string;
}

function fileState(path: string): FileState {
  const stat = statSync(path);
  const sha256 = stat.isFile() ? createHash('sha256').update(readFileSync(path)).digest('hex') : '';
  return { size: stat.size, mtimeMs: stat.mtimeMs, mode: stat.mode, sha256 };
}

const INPUTS = [kernel, truncatedKernel, notKernel, emptyFile, disk, kvmNotADevice, kvmDirectory, bigInitrd];

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI; checks that it left the inputs as they were and its temporary directory empty. */
function runVmm(args: readonly string[]): Run {
  const before = new Map(INPUTS.map((path) => [path, fileState(path)]));
  const result = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, TMPDIR: childTmp },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: RUN_TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  assert.equal(result.error, undefined, `spawning the VMM failed: ${String(result.error)}`);
  assert.equal(result.signal, null, `the VMM was killed by ${result.signal} (timed out?); stderr:\n${result.stderr}`);
  for (const [path, state] of before) assert.deepEqual(fileState(path), state, `${path} was changed`);
  assert.deepEqual(readdirSync(childTmp), [], 'the VMM left files in its temporary directory');
  assert.equal(existsSync(missing), false, `${missing} was created`);
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * The run failed with `code` and one clear message: stderr starts with the
 * only `vmm: ` line, whose text matches every pattern; no stack trace, nothing
 * on stdout. With `usage`, the usage text follows the message.
 */
function assertFails(run: Run, code: number, patterns: readonly RegExp[], options: { usage?: boolean } = {}): void {
  const context = `stderr:\n${run.stderr}`;
  assert.equal(run.status, code, `exit code ${run.status}, expected ${code}; ${context}`);
  assert.equal(run.stdout, '', `unexpected stdout; ${context}`);
  assert.ok(run.stderr.startsWith('vmm: '), `stderr does not start with "vmm: "; ${context}`);
  assert.equal(run.stderr.match(/^vmm: /gm)?.length, 1, `more than one vmm: message; ${context}`);
  assert.doesNotMatch(run.stderr, /at .*\.js:\d+/, `a stack trace; ${context}`);
  assert.doesNotMatch(run.stderr, /^\s+at /m, `a stack trace; ${context}`);
  const message = run.stderr.split('\n')[0] ?? '';
  for (const pattern of patterns) assert.match(message, pattern, context);
  if (options.usage) assert.match(run.stderr, /^usage: /m, `no usage text; ${context}`);
}

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const mentions = (path: string): RegExp => new RegExp(escape(path));

test('the synthetic bzImage passes the loader; the truncated one does not', () => {
  const info = parseBzImage(bzImage());
  assert.equal(info.protocolVersion, 0x020f);
  assert.equal(info.setupSize + info.protectedModeSize, bzImage().length);
  assert.throws(
    () => parseBzImage(bzImage({ truncateBy: 100 })),
    (error: unknown) => error instanceof KernelLoadError && error.code === 'truncated',
  );
});

// --- 1. not a kernel -------------------------------------------------------------

test('a file of random bytes is refused as not a kernel (exit 2)', () => {
  const run = runVmm(['run', '--kernel', notKernel, '--disk', disk]);
  assertFails(run, EXIT_CODE.usage, [mentions(notKernel), /not a Linux kernel/]);
});

test('an empty file is refused as not a kernel (exit 2)', () => {
  const run = runVmm(['run', '--kernel', emptyFile, '--disk', disk]);
  assertFails(run, EXIT_CODE.usage, [mentions(emptyFile), /not a Linux kernel/, /0 bytes/]);
});

test('a directory given as the kernel is refused (exit 2)', () => {
  const run = runVmm(['run', '--kernel', kvmDirectory]);
  assertFails(run, EXIT_CODE.usage, [/cannot read the kernel/, mentions(kvmDirectory)]);
});

// --- 2. truncated bzImage --------------------------------------------------------

test('a truncated bzImage is refused as truncated (exit 2)', () => {
  const run = runVmm(['run', '--kernel', truncatedKernel, '--disk', `${disk}:ro`]);
  assertFails(run, EXIT_CODE.usage, [mentions(truncatedKernel), /truncated/, /file has \d+/]);
});

// --- 3. initrd larger than guest RAM ---------------------------------------------

test('an initrd larger than guest RAM is refused (exit 2)', () => {
  const run = runVmm(['run', '--kernel', kernel, '--initrd', bigInitrd, '--mem', '32', '--disk', disk]);
  assertFails(run, EXIT_CODE.usage, [/initrd/, mentions(bigInitrd), /does not fit/, /32 MiB/]);
});

// --- 4. missing files --------------------------------------------------------------

test('a missing kernel file is named (exit 2)', () => {
  const run = runVmm(['run', '--kernel', missing]);
  assertFails(run, EXIT_CODE.usage, [/kernel/, mentions(missing), /no such file/]);
});

test('a missing initrd is named (exit 2)', () => {
  const run = runVmm(['run', '--kernel', kernel, '--initrd', missing]);
  assertFails(run, EXIT_CODE.usage, [/initrd/, mentions(missing), /no such file/]);
});

test('a missing disk is named, and not created (exit 2)', () => {
  for (const spec of [missing, `${missing}:ro`]) {
    const run = runVmm(['run', '--kernel', kernel, '--disk', disk, '--disk', spec]);
    assertFails(run, EXIT_CODE.usage, [/disk/, mentions(missing), /no such file/]);
  }
});

// --- 5. memory and vCPUs -----------------------------------------------------------

test('more memory than the host can give is refused (exit 2)', () => {
  const run = runVmm(['run', '--kernel', kernel, '--mem', '100000000']);
  assertFails(run, EXIT_CODE.usage, [/memoryMiB 100000000/, /more than this host can give/]);
});

test('nonsense --mem and --vcpus values are refused (exit 2)', () => {
  const cases: [string[], RegExp[]][] = [
    [
      ['--mem', 'abc'],
      [/--mem/, /whole number/, /"abc"/],
    ],
    [
      ['--mem', '1.5'],
      [/--mem/, /whole number/],
    ],
    [
      ['--mem', '0'],
      [/memoryMiB/, /from \d+ to \d+/],
    ],
    [
      ['--vcpus', '0'],
      [/vcpus/, /from 1 to \d+/, /got 0/],
    ],
    [
      ['--vcpus', '999'],
      [/vcpus/, /from 1 to \d+/, /got 999/],
    ],
    [
      ['--vcpus', 'two'],
      [/--vcpus/, /whole number/],
    ],
  ];
  for (const [flags, patterns] of cases) {
    assertFails(runVmm(['run', '--kernel', kernel, ...flags]), EXIT_CODE.usage, patterns);
  }
});

// --- 6. command line and --config ------------------------------------------------

test('an unknown flag is refused with the usage (exit 2)', () => {
  const run = runVmm(['run', '--kernel', kernel, '--bogus']);
  assertFails(run, EXIT_CODE.usage, [/unknown option/i, /--bogus/], { usage: true });
});

test('a missing --kernel is refused with the usage (exit 2)', () => {
  assertFails(runVmm(['run']), EXIT_CODE.usage, [/--kernel is required/], { usage: true });
  assertFails(runVmm(['run', '--mem', '64']), EXIT_CODE.usage, [/--kernel is required/], { usage: true });
});

test('an unknown command, or none, is refused with the usage (exit 2)', () => {
  assertFails(runVmm(['frob', '--kernel', kernel]), EXIT_CODE.usage, [/unknown command "frob"/], { usage: true });
  assertFails(runVmm([]), EXIT_CODE.usage, [/no command given/], { usage: true });
});

test('--help prints the usage on stdout and exits 0', () => {
  for (const args of [['--help'], ['run', '--help']]) {
    const run = runVmm(args);
    assert.equal(run.status, 0, `exit code ${run.status}; stderr:\n${run.stderr}`);
    assert.match(run.stdout, /^usage: /);
    assert.match(run.stdout, /--kernel PATH/);
    assert.equal(run.stderr, '');
  }
});

test('a stray positional argument is refused (exit 2)', () => {
  const run = runVmm(['run', '--kernel', kernel, 'extra']);
  assertFails(run, EXIT_CODE.usage, [/extra/], { usage: true });
});

test('--disk with no path and a non-printable --cmdline are refused (exit 2)', () => {
  assertFails(runVmm(['run', '--kernel', kernel, '--disk', ':ro']), EXIT_CODE.usage, [/--disk needs a path/]);
  const run = runVmm(['run', '--kernel', kernel, '--cmdline', 'console=ttyS0\u0007']);
  assertFails(run, EXIT_CODE.usage, [/command line/, /printable ASCII/]);
});

test('an unreadable or invalid --config is refused (exit 2)', () => {
  assertFails(runVmm(['run', '--config', missing]), EXIT_CODE.usage, [
    /cannot read the configuration/,
    mentions(missing),
  ]);
  const broken = input('broken.json', new TextEncoder().encode('{"kernel": '));
  assertFails(runVmm(['run', '--config', broken]), EXIT_CODE.usage, [mentions(broken), /not valid JSON/]);
  for (const json of ['null', '"kernel"', '42', '[]']) {
    const path = input('not-an-object.json', new TextEncoder().encode(json));
    assertFails(runVmm(['run', '--kernel', kernel, '--config', path]), EXIT_CODE.usage, [
      mentions(path),
      /must be a JSON object/,
    ]);
  }
});

test('a --config with an unknown or mistyped field is refused (exit 2)', () => {
  const unknown = input('unknown.json', new TextEncoder().encode(JSON.stringify({ kernel, memoryMb: 64 })));
  assertFails(runVmm(['run', '--config', unknown]), EXIT_CODE.usage, [/unknown configuration field/, /memoryMb/]);
  const mistyped = input('mistyped.json', new TextEncoder().encode(JSON.stringify({ kernel, vcpus: '2' })));
  assertFails(runVmm(['run', '--config', mistyped]), EXIT_CODE.usage, [/vcpus/, /integer/]);
});

// --- 7. the KVM device -----------------------------------------------------------

test('a KVM device that does not exist is reported (exit 1)', () => {
  const device = '/nonexistent/kvm';
  const run = runVmm(['run', '--kernel', kernel, '--disk', disk, '--allow-no-hw-virt', '--kvm', device]);
  assertFails(run, EXIT_CODE.error, [mentions(device), /does not exist/]);
});

test('a KVM device path that is a directory is reported (exit 1)', () => {
  const run = runVmm(['run', '--kernel', kernel, '--allow-no-hw-virt', '--kvm', kvmDirectory]);
  assertFails(run, EXIT_CODE.error, [/cannot open/, mentions(kvmDirectory), /is a directory/i]);
});

test('a KVM device path that is a regular file is reported (exit 1)', () => {
  // Root opens it fine; the first KVM ioctl then fails with ENOTTY.
  const run = runVmm(['run', '--kernel', kernel, '--allow-no-hw-virt', '--kvm', kvmNotADevice]);
  assertFails(run, EXIT_CODE.error, [/KVM_GET_API_VERSION|not a KVM device/]);
});

// --- 8. a KVM that cannot run the guest ----------------------------------------------

const hardwareVirtualization = cpuHardwareVirtualization();

test(
  'without hardware virtualization the VMM refuses to start and points to the KVM lab (exit 1)',
  {
    skip:
      hardwareVirtualization === null
        ? false
        : `this CPU has ${hardwareVirtualization}: its KVM could run the guest, so the refusal cannot be seen here`,
  },
  () => {
    const run = runVmm(['run', '--kernel', kernel, '--disk', disk]);
    assertFails(run, EXIT_CODE.error, [/no hardware virtualization/, /KVM lab/]);
  },
);
