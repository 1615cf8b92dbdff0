/**
 * `npm run bench:boot [-- --runs N]`: boot time and host memory of our VMM
 * against QEMU's microvm, same kernel, initramfs, command line, 256 MiB and
 * one vCPU, run alternately. Needs a /dev/kvm that runs Linux: inside the
 * KVM lab (what `npm run bench:boot` does here) or on hardware KVM.
 *
 * The guest's /init tells the VMM "init reached" (boot signal port), prints
 * `BENCH-INIT <uptime> <kernel time of "Run /init">` and powers off. For each
 * run we take: spawn → marker line on stdout, spawn → process exit, the
 * guest's own clock at the marker, our VMM's --timings (VM creation → init,
 * exits), and the peak host memory of the VMM process (see proc-memory.ts).
 * A table goes to stdout, and as the last line one JSON object with the
 * medians and ratios. docs/benchmarks.md explains the numbers.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { detectHostKvm } from '../lab/host-kvm.js';
import { SIGNAL_INIT_REACHED, TEST_CMDLINE, testGuest, type TestGuest } from '../integration/guest-fixtures.js';
import { EMPTY_MEMORY_REPORT, MemorySampler, type MemoryReport } from './proc-memory.js';
import { ratio, round, summarize, type Summary } from './stats.js';

const VMM_CLI = fileURLToPath(new URL('../../vmm/cli.js', import.meta.url));
const QEMU = 'qemu-system-x86_64';
const GUEST_MEMORY_MIB = 256;
const MARKER = 'BENCH-INIT';
/** How much of a failed run's output to show. */
const DIAGNOSTIC_TAIL = 2000;

/**
 * The guest's script (after the shared /init preamble has mounted /proc, /sys,
 * /dev and loaded the test modules): signal, read the clocks, power off. The
 * marker carries /proc/uptime, the kernel's timestamp of "Run /init", and how
 * long the kernel spent probing a CMOS RTC (the gap before rtc_cmos's own
 * message; "none" when the firmware tables say there is no RTC, as ours do).
 */
const GUEST_SCRIPT = `${SIGNAL_INIT_REACHED}
up=$(cut -d' ' -f1 /proc/uptime)
log=$(dmesg)
k=$(echo "$log" | sed -n 's/^\\[ *\\([0-9.]*\\)\\] Run \\/init as init process.*/\\1/p' | head -n 1)
rtc=$(echo "$log" | awk '{ t = $0; sub(/^\\[ */, "", t); sub(/\\].*/, "", t) } /rtc_cmos rtc_cmos:/ { printf "%.6f", t - prev; exit } { prev = t }')
echo "${MARKER} $up \${k:-none} \${rtc:-none}"
poweroff -f
`;

type VmmKind = 'ours' | 'qemu';
const KINDS: readonly VmmKind[] = ['ours', 'qemu'];
const LABEL: Record<VmmKind, string> = { ours: 'belljar', qemu: 'qemu microvm' };

/** What our VMM's --timings reports. */
interface VmmTimings {
  readonly createMs: number | null;
  readonly startToInitMs: number | null;
  readonly createToInitMs: number | null;
  readonly processToInitMs: number | null;
  readonly exits: number | null;
}

interface RunResult {
  readonly kind: VmmKind;
  readonly warmup: boolean;
  readonly failure: string | null;
  readonly spawnToInitMs: number | null;
  readonly spawnToExitMs: number | null;
  /** /proc/uptime when the marker was printed. */
  readonly guestUptimeAtInitMs: number | null;
  /** The kernel's timestamp of "Run /init as init process" (dmesg). */
  readonly kernelToInitMs: number | null;
  /** Kernel time spent probing a CMOS RTC; null when the kernel did not probe one. */
  readonly rtcProbeMs: number | null;
  readonly timings: VmmTimings | null;
  readonly memory: MemoryReport;
}

interface Options {
  readonly runs: number;
  readonly warmup: number;
  readonly timeoutMs: number;
  /** QEMU's -M value. */
  readonly qemuMachine: string;
}

/**
 * QEMU's microvm with ACPI (so the guest finds virtio-mmio devices as it does
 * under ours). Note: QEMU 7.2's microvm never sets the FADT "no CMOS RTC"
 * flag, not even with rtc=off, so its guest always probes rtc_cmos; ours sets
 * the flag. The probe time is measured separately (rtcProbeMs).
 */
const DEFAULT_QEMU_MACHINE = 'microvm,acpi=on';

function parseOptions(): Options {
  const usage =
    'usage: node dist/test/bench/boot.js [--runs N] [--warmup N] [--timeout SECONDS] [--qemu-machine M]\n' +
    `  --qemu-machine M   QEMU's -M value (default ${DEFAULT_QEMU_MACHINE})\n` +
    '  (normally: npm run bench:boot -- --runs N, which runs it where a real KVM is)';
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        runs: { type: 'string', default: '5' },
        warmup: { type: 'string', default: '1' },
        timeout: { type: 'string', default: '120' },
        'qemu-machine': { type: 'string', default: DEFAULT_QEMU_MACHINE },
        help: { type: 'boolean' },
      },
      strict: true,
    }));
  } catch (error) {
    console.error(`${(error as Error).message}\n${usage}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  const whole = (text: string, flag: string, min: number) => {
    if (!/^\d+$/.test(text) || Number(text) < min) {
      console.error(`${flag} needs a whole number ≥ ${min}, got ${JSON.stringify(text)}\n${usage}`);
      process.exit(2);
    }
    return Number(text);
  };
  return {
    runs: whole(values.runs, '--runs', 1),
    warmup: whole(values.warmup, '--warmup', 0),
    timeoutMs: whole(values.timeout, '--timeout', 1) * 1000,
    qemuMachine: values['qemu-machine'],
  };
}

function commandFor(kind: VmmKind, guest: TestGuest, options: Options): { command: string; args: string[] } {
  const kernel = guest.kernel.vmlinuz;
  if (kind === 'ours') {
    return {
      command: process.execPath,
      args: [
        VMM_CLI,
        'run',
        '--kernel',
        kernel,
        '--initrd',
        guest.initrd,
        '--mem',
        String(GUEST_MEMORY_MIB),
        '--vcpus',
        '1',
        '--cmdline',
        TEST_CMDLINE,
        '--timings',
      ],
    };
  }
  return {
    command: QEMU,
    args: [
      '-M',
      options.qemuMachine,
      '-accel',
      'kvm',
      '-cpu',
      'host',
      '-m',
      String(GUEST_MEMORY_MIB),
      '-smp',
      '1',
      '-nodefaults',
      '-no-user-config',
      '-nographic',
      '-serial',
      'stdio',
      '-no-reboot',
      // Our VMM offers a virtio-rng (modern virtio-mmio) by default; give QEMU's guest the same device.
      '-global',
      'virtio-mmio.force-legacy=false',
      '-device',
      'virtio-rng-device',
      '-kernel',
      kernel,
      '-initrd',
      guest.initrd,
      '-append',
      TEST_CMDLINE,
    ],
  };
}

/** The child being measured, so a signal can kill it. */
let current: ChildProcess | null = null;

function numberOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function parseTimings(stderr: string): VmmTimings | null {
  const json = /vmm: timings (\{.*\})/.exec(stderr)?.[1];
  if (json === undefined) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return null;
  }
  if (typeof parsed !== 'object' || parsed === null) return null;
  const r = parsed as Record<string, unknown>;
  return {
    createMs: numberOrNull(r['createMs']),
    startToInitMs: numberOrNull(r['startToInitMs']),
    createToInitMs: numberOrNull(r['createToInitMs']),
    processToInitMs: numberOrNull(r['processToInitMs']),
    exits: numberOrNull(r['exits']),
  };
}

function secondsToMs(text: string | undefined): number | null {
  if (text === undefined || !/^\d+(\.\d+)?$/.test(text)) return null;
  return round(Number(text) * 1000, 1);
}

async function runOnce(kind: VmmKind, guest: TestGuest, options: Options, warmup: boolean): Promise<RunResult> {
  const { command, args } = commandFor(kind, guest, options);
  const started = performance.now();
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  current = child;
  const sampler = child.pid === undefined ? null : new MemorySampler(child.pid, GUEST_MEMORY_MIB * 2 ** 20);
  let stdout = '';
  let stderr = '';
  let lineStart = 0;
  let markerAt: number | null = null;
  let markerFields: string[] = [];
  let exitedAt: number | null = null;
  let timedOut = false;

  child.stdout.setEncoding('utf8').on('data', (data: string) => {
    const now = performance.now();
    stdout += data;
    if (markerAt !== null) return;
    // Only complete lines count: the marker line ends with the clocks.
    let newline: number;
    while ((newline = stdout.indexOf('\n', lineStart)) >= 0) {
      const line = stdout.slice(lineStart, newline).replace(/\r/g, '');
      lineStart = newline + 1;
      const at = line.indexOf(`${MARKER} `);
      if (at >= 0) {
        markerAt = now;
        // The guest has booted: split its memory from the VMM's (one smaps read).
        void sampler?.snapshot();
        markerFields = line
          .slice(at + MARKER.length + 1)
          .trim()
          .split(/\s+/);
        break;
      }
    }
  });
  child.stderr.setEncoding('utf8').on('data', (data: string) => (stderr += data));
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, options.timeoutMs);

  const outcome = await new Promise<{ code: number | null; signal: NodeJS.Signals | null } | Error>((resolve) => {
    child.on('error', (error) => resolve(error));
    child.on('exit', () => (exitedAt = performance.now()));
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  clearTimeout(timer);
  current = null;
  const memory = sampler ? await sampler.stop() : EMPTY_MEMORY_REPORT;

  let failure: string | null = null;
  if (outcome instanceof Error) failure = `cannot start ${command}: ${outcome.message}`;
  else if (timedOut) failure = `no exit within ${options.timeoutMs / 1000} s (killed)`;
  else if (outcome.code !== 0) failure = `exit ${outcome.code ?? outcome.signal}`;
  else if (markerAt === null) failure = `no ${MARKER} line on the console`;
  if (failure !== null) {
    failure += ` after ${((performance.now() - started) / 1000).toFixed(1)} s`;
    const tail = (text: string) => text.slice(-DIAGNOSTIC_TAIL).trimEnd();
    failure += `\n--- stdout (tail) ---\n${tail(stdout)}\n--- stderr (tail) ---\n${tail(stderr)}`;
  }
  const relative = (at: number | null) => (at === null ? null : round(at - started, 1));
  return {
    kind,
    warmup,
    failure,
    spawnToInitMs: relative(markerAt),
    spawnToExitMs: relative(exitedAt),
    guestUptimeAtInitMs: secondsToMs(markerFields[0]),
    kernelToInitMs: secondsToMs(markerFields[1]),
    rtcProbeMs: secondsToMs(markerFields[2]),
    timings: kind === 'ours' ? parseTimings(stderr) : null,
    memory,
  };
}

const s = (ms: number | null | undefined) => (ms === null || ms === undefined ? 'n/a' : `${(ms / 1000).toFixed(2)} s`);
const mib = (value: number | null) => (value === null ? 'n/a' : `${value.toFixed(1)} MiB`);

function describeRun(r: RunResult, label: string): string {
  const parts = [
    `spawn→init ${s(r.spawnToInitMs)}`,
    `spawn→exit ${s(r.spawnToExitMs)}`,
    `guest uptime at init ${s(r.guestUptimeAtInitMs)}`,
    `kernel "Run /init" ${s(r.kernelToInitMs)}`,
    `RTC probe ${r.rtcProbeMs === null ? 'none' : s(r.rtcProbeMs)}`,
  ];
  if (r.timings) parts.push(`create→init ${s(r.timings.createToInitMs)}`, `exits ${r.timings.exits ?? 'n/a'}`);
  parts.push(
    `peak RSS ${mib(r.memory.vmRssMiB)} (${r.memory.samples} samples); at init: guest RAM resident ` +
      `${mib(r.memory.guestResidentMiB)}, beyond it ${mib(r.memory.beyondGuestMiB)} ` +
      `(anonymous ${mib(r.memory.beyondGuestAnonMiB)})`,
  );
  return `${label} ${LABEL[r.kind]}: ${r.failure === null ? parts.join(', ') : `FAILED: ${r.failure}`}`;
}

interface Metric {
  readonly key: string;
  readonly label: string;
  readonly unit: 's' | 'MiB' | 'count';
  readonly get: (r: RunResult) => number | null | undefined;
  readonly only?: VmmKind;
}

const METRICS: readonly Metric[] = [
  { key: 'spawnToInitMs', label: 'spawn → init marker', unit: 's', get: (r) => r.spawnToInitMs },
  { key: 'spawnToExitMs', label: 'spawn → process exit', unit: 's', get: (r) => r.spawnToExitMs },
  { key: 'guestUptimeAtInitMs', label: 'guest uptime at init', unit: 's', get: (r) => r.guestUptimeAtInitMs },
  { key: 'kernelToInitMs', label: 'kernel clock at "Run /init"', unit: 's', get: (r) => r.kernelToInitMs },
  { key: 'rtcProbeMs', label: '  of it CMOS RTC probe', unit: 's', get: (r) => r.rtcProbeMs ?? 0 },
  {
    key: 'kernelToInitWithoutRtcMs',
    label: '  without the RTC probe',
    unit: 's',
    get: (r) => (r.kernelToInitMs === null ? null : r.kernelToInitMs - (r.rtcProbeMs ?? 0)),
  },
  {
    key: 'createToInitMs',
    label: 'VM creation → init (--timings)',
    unit: 's',
    get: (r) => r.timings?.createToInitMs,
    only: 'ours',
  },
  {
    key: 'processToInitMs',
    label: 'VMM process start → init',
    unit: 's',
    get: (r) => r.timings?.processToInitMs,
    only: 'ours',
  },
  { key: 'exits', label: 'VM exits handled', unit: 'count', get: (r) => r.timings?.exits, only: 'ours' },
  { key: 'peakVmRssMiB', label: 'peak VmRSS', unit: 'MiB', get: (r) => r.memory.vmRssMiB },
  { key: 'peakRssAnonMiB', label: 'peak RssAnon', unit: 'MiB', get: (r) => r.memory.rssAnonMiB },
  { key: 'peakRssFileMiB', label: 'peak RssFile', unit: 'MiB', get: (r) => r.memory.rssFileMiB },
  { key: 'peakRssShmemMiB', label: 'peak RssShmem', unit: 'MiB', get: (r) => r.memory.rssShmemMiB },
  {
    key: 'peakRssWithoutShmemMiB',
    label: 'peak RssAnon+RssFile',
    unit: 'MiB',
    get: (r) => r.memory.rssWithoutShmemMiB,
  },
  {
    key: 'peakBeyondGuestMiB',
    label: 'peak VmRSS − guest RAM at init',
    unit: 'MiB',
    get: (r) => r.memory.peakBeyondGuestMiB,
  },
  { key: 'guestResidentMiB', label: 'at init: guest RAM resident', unit: 'MiB', get: (r) => r.memory.guestResidentMiB },
  { key: 'beyondGuestMiB', label: 'at init: RSS beyond guest RAM', unit: 'MiB', get: (r) => r.memory.beyondGuestMiB },
  {
    key: 'beyondGuestAnonMiB',
    label: '  of it anonymous (private)',
    unit: 'MiB',
    get: (r) => r.memory.beyondGuestAnonMiB,
  },
];

function formatValue(value: number, unit: Metric['unit']): string {
  if (unit === 's') return (value / 1000).toFixed(2);
  if (unit === 'MiB') return value.toFixed(1);
  return String(Math.round(value));
}

function formatSummary(summary: Summary | null, unit: Metric['unit']): string {
  if (!summary) return '—';
  const f = (v: number) => formatValue(v, unit);
  return summary.n === 1 ? f(summary.median) : `${f(summary.median)} (${f(summary.min)}–${f(summary.max)})`;
}

function jsonSummary(summary: Summary | null, unit: Metric['unit']) {
  if (!summary) return null;
  const digits = unit === 'count' ? 0 : 1;
  return { median: round(summary.median, digits), min: round(summary.min, digits), max: round(summary.max, digits) };
}

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((row) => (row[col] ?? '').length)));
  return rows
    .map((row) =>
      row
        .map((cell, col) => (col === 0 ? cell.padEnd(widths[col]!) : cell.padStart(widths[col]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function qemuVersion(): string {
  try {
    const text = execFileSync(QEMU, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return /version (\S+)/.exec(text)?.[1] ?? text.split('\n')[0]?.trim() ?? 'unknown';
  } catch (error) {
    throw new Error(`cannot run ${QEMU}: ${(error as Error).message} (install Debian's qemu-system-x86)`, {
      cause: error,
    });
  }
}

function whereWeRun(): 'lab' | 'direct' {
  if (process.env['BELLJAR_IN_LAB'] === '1') return 'lab';
  const host = detectHostKvm();
  if (host.mode === 'direct') return 'direct';
  console.error(
    `bench: needs a /dev/kvm that runs Linux (${host.reason}).\n` +
      'Run it through the KVM lab: npm run bench:boot [-- --runs N]',
  );
  process.exit(2);
}

async function main(): Promise<void> {
  const options = parseOptions();
  const where = whereWeRun();
  const qemu = qemuVersion();
  const guest = await testGuest(GUEST_SCRIPT);
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    console.error(`bench: ${signal}: stopping`);
    current?.kill('SIGKILL');
    guest.dispose();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const results: RunResult[] = [];
  try {
    const cpuModel = cpus()[0]?.model ?? 'unknown';
    console.log(
      `bench: boot, ${where === 'lab' ? 'in the KVM lab (nested KVM under a software CPU)' : 'on hardware KVM'}; ` +
        `kernel ${guest.kernel.release} (${guest.kernel.packageVersion}), QEMU ${qemu} -M ${options.qemuMachine}, ` +
        `Node ${process.version}, ` +
        `${GUEST_MEMORY_MIB} MiB, 1 vCPU, cmdline "${TEST_CMDLINE}", CPU ${cpuModel} ×${cpus().length}`,
    );
    console.log(
      `bench: ${options.warmup} warm-up + ${options.runs} measured run(s) of each, alternating, ` +
        `timeout ${options.timeoutMs / 1000} s per run`,
    );
    const total = options.warmup + options.runs;
    for (let i = 0; i < total; i++) {
      const warmup = i < options.warmup;
      for (const kind of KINDS) {
        const result = await runOnce(kind, guest, options, warmup);
        const label = warmup ? `warm-up ${i + 1}/${options.warmup}` : `run ${i - options.warmup + 1}/${options.runs}`;
        console.log(describeRun(result, label));
        results.push(result);
      }
    }
  } finally {
    guest.dispose();
  }

  const measured = (kind: VmmKind) => results.filter((r) => r.kind === kind && !r.warmup && r.failure === null);
  const summaries = new Map<string, Summary | null>();
  for (const kind of KINDS) {
    for (const metric of METRICS) {
      summaries.set(`${kind}.${metric.key}`, summarize(measured(kind).map(metric.get)));
    }
  }
  const get = (kind: VmmKind, key: string) => summaries.get(`${kind}.${key}`) ?? null;

  const rows: string[][] = [['median (min–max)', LABEL.ours, LABEL.qemu, 'ours/QEMU']];
  for (const metric of METRICS) {
    const unit = metric.unit === 'count' ? '' : ` [${metric.unit}]`;
    const ours = get('ours', metric.key);
    const theirs = get('qemu', metric.key);
    const r = metric.only ? null : ratio(ours, theirs);
    rows.push([
      `${metric.label}${unit}`,
      metric.only === 'qemu' ? '—' : formatSummary(ours, metric.unit),
      metric.only === 'ours' ? '—' : formatSummary(theirs, metric.unit),
      r === null ? '' : r.toFixed(2),
    ]);
  }
  const createVsQemu = ratio(get('ours', 'createToInitMs'), get('qemu', 'spawnToInitMs'));
  console.log('');
  console.log(table(rows));
  console.log(
    `ours VM creation → init vs QEMU spawn → init: ${createVsQemu === null ? 'n/a' : createVsQemu.toFixed(2)} ` +
      '(leaves out our Node start-up, includes QEMU’s)',
  );
  const failures = { ours: 0, qemu: 0 };
  for (const r of results) if (r.failure !== null && !r.warmup) failures[r.kind]++;
  if (failures.ours + failures.qemu > 0) {
    console.log(`bench: failed runs: ours ${failures.ours}, qemu ${failures.qemu} (left out of the statistics)`);
  }

  const perVmm = (kind: VmmKind) => {
    const out: Record<string, unknown> = { ok: measured(kind).length };
    for (const metric of METRICS) {
      if (metric.only && metric.only !== kind) continue;
      out[metric.key] = jsonSummary(get(kind, metric.key), metric.unit);
    }
    return out;
  };
  const report = {
    bench: 'boot',
    where,
    runs: options.runs,
    warmup: options.warmup,
    kernel: `${guest.kernel.release} (${guest.kernel.packageVersion})`,
    qemu,
    qemuMachine: options.qemuMachine,
    node: process.version,
    memoryMiB: GUEST_MEMORY_MIB,
    vcpus: 1,
    cmdline: TEST_CMDLINE,
    ours: perVmm('ours'),
    qemuMicrovm: perVmm('qemu'),
    ratios: {
      spawnToInit: ratio(get('ours', 'spawnToInitMs'), get('qemu', 'spawnToInitMs')),
      spawnToExit: ratio(get('ours', 'spawnToExitMs'), get('qemu', 'spawnToExitMs')),
      guestUptimeAtInit: ratio(get('ours', 'guestUptimeAtInitMs'), get('qemu', 'guestUptimeAtInitMs')),
      kernelToInit: ratio(get('ours', 'kernelToInitMs'), get('qemu', 'kernelToInitMs')),
      kernelToInitWithoutRtc: ratio(get('ours', 'kernelToInitWithoutRtcMs'), get('qemu', 'kernelToInitWithoutRtcMs')),
      oursCreateToInitVsQemuSpawnToInit: createVsQemu,
      rssBeyondGuestAtInit: ratio(get('ours', 'beyondGuestMiB'), get('qemu', 'beyondGuestMiB')),
      peakRssBeyondGuest: ratio(get('ours', 'peakBeyondGuestMiB'), get('qemu', 'peakBeyondGuestMiB')),
      peakVmRss: ratio(get('ours', 'peakVmRssMiB'), get('qemu', 'peakVmRssMiB')),
    },
    failures,
  };
  console.log(JSON.stringify(report));
  process.exitCode =
    failures.ours + failures.qemu > 0 || measured('ours').length === 0 || measured('qemu').length === 0 ? 1 : 0;
}

try {
  await main();
} catch (error) {
  console.error(`bench: ${(error as Error).message}`);
  process.exitCode = 1;
}
