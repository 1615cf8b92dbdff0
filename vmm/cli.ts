/**
 * The VMM's command line, for people and tests:
 *   npm run vmm -- run --kernel K [--initrd I] [--cmdline "…"] [--disk path[:ro]]… [--mem MiB] [--vcpus N]
 *   npm run vmm -- run --config vm.json   (all options as JSON; flags given too override it)
 * The guest's serial console is on stdout/stdin. The exit code says how the
 * guest ended (vmm/exit-codes.ts).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { KernelLoadError, type KernelLoadErrorCode } from './arch/x86_64/kernel-loader.js';
import { BootParamsError } from './arch/x86_64/boot-params.js';
import { ConfigError, DEFAULT_CMDLINE, DEFAULT_MEMORY_MIB, parseDiskSpec, parseVmConfig } from './config.js';
import { EXIT_CODE } from './exit-codes.js';
import { KvmError } from './kvm/kvm.js';
import { GuestRamError } from './memory/guest-ram.js';
import { Vm, VmError, type VmExit } from './vm.js';

const USAGE = `usage: npm run vmm -- run [options]
  --kernel PATH        Linux kernel (bzImage or ELF vmlinux)
  --initrd PATH        initramfs
  --cmdline TEXT       kernel command line (default: "${DEFAULT_CMDLINE}")
  --disk PATH[:ro]     a virtio-blk disk, read-write unless :ro (repeatable)
  --mem MIB            guest RAM in MiB (default ${DEFAULT_MEMORY_MIB})
  --vcpus N            number of vCPUs (default 1)
  --config FILE        all options as a JSON object (kernel, initrd, cmdline, disks, memoryMiB, vcpus, rng)
  --timings            print boot timings as JSON on stderr when the VM ends
  --kvm PATH           the KVM device (default /dev/kvm)
  --allow-no-hw-virt   try even where the CPU exposes no hardware virtualization
exit codes: 0 poweroff or stopped, 1 VMM error, 2 bad input, 3 reboot, 4 triple fault, 5 guest panic`;

/** Ctrl-A then x ends the VM from an interactive terminal (as in QEMU). */
const ESCAPE_PREFIX = 0x01;
const ESCAPE_QUIT = 0x78;

/** What each kernel loader failure means, said first in its message (the loader's detail follows). */
const KERNEL_PROBLEMS: Record<KernelLoadErrorCode, string> = {
  'bad-magic': 'is not a Linux kernel',
  truncated: 'is truncated',
  'old-protocol': 'uses too old a boot protocol',
  'not-64-bit': 'is not a 64-bit kernel',
  unsupported: 'is a kernel this VMM cannot boot',
  'too-big': 'is too big for this VM',
};

function fail(code: number, message: string): never {
  process.stderr.write(`vmm: ${message}\n`);
  process.exit(code);
}

function exitCodeFor(exit: VmExit): number {
  switch (exit.kind) {
    case 'poweroff':
    case 'stopped':
      return EXIT_CODE.poweroff;
    case 'reboot':
      return EXIT_CODE.reboot;
    case 'triple-fault':
      return EXIT_CODE.tripleFault;
    case 'panic':
      return EXIT_CODE.panic;
    case 'error':
      return EXIT_CODE.error;
  }
}

function describe(exit: VmExit): string {
  switch (exit.kind) {
    case 'poweroff':
      return 'the guest powered off';
    case 'stopped':
      return 'stopped by the host';
    case 'reboot':
      return 'the guest rebooted';
    case 'triple-fault':
      return 'the guest triple-faulted';
    case 'panic':
      return 'the guest kernel panicked';
    case 'error':
      return `error: ${exit.detail}`;
  }
}

function parseCommandLine(argv: string[]) {
  if (argv[0] === '--help' || argv[0] === '-h') {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  if (argv[0] !== 'run') {
    fail(
      EXIT_CODE.usage,
      argv.length === 0 ? `no command given\n${USAGE}` : `unknown command ${JSON.stringify(argv[0])}\n${USAGE}`,
    );
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: argv.slice(1),
      options: {
        kernel: { type: 'string' },
        initrd: { type: 'string' },
        cmdline: { type: 'string' },
        disk: { type: 'string', multiple: true },
        mem: { type: 'string' },
        vcpus: { type: 'string' },
        config: { type: 'string' },
        timings: { type: 'boolean' },
        'allow-no-hw-virt': { type: 'boolean' },
        kvm: { type: 'string' },
        help: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (error) {
    fail(EXIT_CODE.usage, `${(error as Error).message}\n${USAGE}`);
  }
  const v = parsed.values;
  if (v.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  let raw: Record<string, unknown> = {};
  if (v.config !== undefined) {
    let text = '';
    try {
      text = readFileSync(v.config, 'utf8');
    } catch (error) {
      fail(EXIT_CODE.usage, `cannot read the configuration ${v.config}: ${(error as Error).message}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      fail(EXIT_CODE.usage, `the configuration ${v.config} is not valid JSON: ${(error as Error).message}`);
    }
    // The flags are merged into it below, which would throw on null, a number or a string.
    if (typeof json !== 'object' || json === null || Array.isArray(json)) {
      fail(EXIT_CODE.usage, `the configuration ${v.config} must be a JSON object`);
    }
    raw = json as Record<string, unknown>;
  }
  const number = (text: string | undefined, flag: string) => {
    if (text === undefined) return undefined;
    if (!/^\d+$/.test(text)) fail(EXIT_CODE.usage, `${flag} needs a whole number, got ${JSON.stringify(text)}`);
    return Number(text);
  };
  const overrides: Record<string, unknown> = {
    kernel: v.kernel,
    initrd: v.initrd,
    cmdline: v.cmdline,
    memoryMiB: number(v.mem, '--mem'),
    vcpus: number(v.vcpus, '--vcpus'),
  };
  for (const [key, value] of Object.entries(overrides)) if (value !== undefined) raw[key] = value;
  if (v.disk) {
    try {
      raw['disks'] = v.disk.map(parseDiskSpec);
    } catch (error) {
      fail(EXIT_CODE.usage, (error as Error).message);
    }
  }
  if (raw['kernel'] === undefined) fail(EXIT_CODE.usage, `--kernel is required\n${USAGE}`);
  try {
    return {
      config: parseVmConfig(raw),
      timings: v.timings ?? false,
      allowNoHwVirt: v['allow-no-hw-virt'] ?? false,
      kvmDevice: v.kvm,
    };
  } catch (error) {
    if (error instanceof ConfigError) fail(EXIT_CODE.usage, error.message);
    throw error;
  }
}

function connectStdin(vm: Vm): void {
  const stdin = process.stdin;
  let pending: Buffer | null = null;
  let escape = false;
  const deliver = () => {
    if (!pending) return;
    const taken = vm.serialInput(pending);
    pending = taken < pending.length ? pending.subarray(taken) : null;
    if (pending) {
      stdin.pause();
      setTimeout(deliver, 10);
    } else {
      stdin.resume();
    }
  };
  if (stdin.isTTY) stdin.setRawMode(true);
  stdin.on('data', (chunk: Buffer) => {
    if (stdin.isTTY) {
      for (const byte of chunk) {
        if (escape && byte === ESCAPE_QUIT) void vm.stop();
        escape = byte === ESCAPE_PREFIX;
      }
    }
    pending = pending ? Buffer.concat([pending, chunk]) : chunk;
    deliver();
  });
  stdin.on('error', () => {});
}

async function main(): Promise<void> {
  const { config, timings, allowNoHwVirt, kvmDevice } = parseCommandLine(process.argv.slice(2));
  let vm: Vm;
  try {
    vm = Vm.create(
      config,
      { serialOutput: (bytes) => process.stdout.write(bytes) },
      {
        requireHardwareVirtualization: !allowNoHwVirt,
        ...(kvmDevice === undefined ? {} : { kvmDevice }),
      },
    );
  } catch (error) {
    if (error instanceof KernelLoadError) {
      const detail = error.message.replace(/^kernel: /, '');
      fail(
        EXIT_CODE.usage,
        detail.startsWith('not a Linux kernel')
          ? `the kernel ${config.kernel} is ${detail}`
          : `the kernel ${config.kernel} ${KERNEL_PROBLEMS[error.code]}: ${detail}`,
      );
    }
    if (error instanceof BootParamsError && error.code === 'initrd-too-big' && config.initrd !== undefined) {
      const detail = error.message.replace(/^boot params: /, '');
      fail(
        EXIT_CODE.usage,
        `the initrd ${config.initrd} does not fit in the guest's ${config.memoryMiB} MiB of RAM (--mem): ${detail}`,
      );
    }
    if (error instanceof BootParamsError || error instanceof ConfigError || error instanceof GuestRamError) {
      fail(EXIT_CODE.usage, error.message);
    }
    if (error instanceof VmError && /cannot (read|open)/.test(error.message)) fail(EXIT_CODE.usage, error.message);
    if (error instanceof VmError || error instanceof KvmError) fail(EXIT_CODE.error, error.message);
    throw error;
  }
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => void vm.stop());
  connectStdin(vm);
  vm.start();
  const exit = await vm.exit;
  if (process.stdin.isTTY) process.stdin.setRawMode(false);
  process.stdin.destroy();
  const t = vm.timings;
  process.stderr.write(`vmm: ${describe(exit)}\n`);
  if (timings) {
    const ms = (a: number | null, b: number | null) =>
      a === null || b === null ? null : Math.round((b - a) * 10) / 10;
    const report = {
      exit: exit.kind,
      createMs: ms(t.createdAt, t.startedAt),
      startToInitMs: ms(t.startedAt, t.initReachedAt),
      createToInitMs: ms(t.createdAt, t.initReachedAt),
      processToInitMs: t.initReachedAt === null ? null : Math.round(t.initReachedAt * 10) / 10,
      exits: vm.exitCount,
    };
    process.stderr.write(`vmm: timings ${JSON.stringify(report)}\n`);
  }
  process.exitCode = exitCodeFor(exit);
}

await main();
