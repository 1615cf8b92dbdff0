/**
 * Runs one command inside the KVM lab's L1 machine and returns its exit code.
 * Output is streamed as it comes; QEMU is always killed and the control
 * directory removed, on success, failure, timeout or signal.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheRoot } from '../../guest-images/cache.js';
import { CONTROL_FILES, DUMP_REQUEST, QEMU_EXIT_L1_PANICKED, l1Image, l1QemuArgs } from './l1-machine.js';
import { L1_FROZE_LINE, L1_PANICKED_LINE } from '../support/lab-faults.js';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  describeCpus,
  monitorCommand,
  parseRegisters,
  readSymbols,
  summarizeApic,
  type CpuRegisters,
  type KernelSymbols,
} from './l1-cpu-state.js';

export const QEMU = 'qemu-system-x86_64';
/** Exit codes the lab itself uses (the shell's conventions). */
export const LAB_EXIT = { timeout: 124, labFailure: 125, interrupted: 130 } as const;
/** Environment variables that cross into the lab (plus every BELLJAR_* one). */
const PASSED_ENV = ['CI', 'TERM', 'LANG', 'NODE_OPTIONS', 'NO_COLOR', 'FORCE_COLOR'];
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Whole lab runs are bounded; tests pass a tighter limit. */
export const DEFAULT_LAB_TIMEOUT_MS = 30 * 60_000;
export const DEFAULT_LAB_MEMORY_MIB = 4096;
export const DEFAULT_LAB_CPUS = 2;

export interface LabRunOptions {
  readonly argv: readonly string[];
  readonly cwd?: string;
  readonly timeoutMs?: number;
  readonly memoryMiB?: number;
  /** Receives the command's output (stdout and stderr share L1's console). */
  readonly output?: (chunk: string) => void;
  readonly log?: (line: string) => void;
  readonly signal?: AbortSignal;
  /** Host TCP ports (on 127.0.0.1) forwarded to the same ports inside L1. */
  readonly forwardPorts?: readonly number[];
  /**
   * For commands that keep L1 busy (the product guest's tests): L1 that uses
   * under FROZEN_CPU_SHARE of a CPU for this long has frozen, a known lab
   * fault (docs/benchmarks.md), and is stopped; the result says `frozen`.
   */
  readonly frozenAfterMs?: number;
  /**
   * For commands that print progress at least this often: a command silent
   * for longer has hung (its own timeouts did not fire, so L1 is the likely
   * culprit); L1 is stopped and the result says `silent`.
   */
  readonly silentAfterMs?: number;
  /**
   * The caller's own finding that the command hung (say, its port stopped
   * answering): L1's stacks and CPUs are logged, then it is stopped, and the
   * result says `unresponsive`.
   */
  readonly hung?: AbortSignal;
}

export interface LabRunResult {
  readonly exitCode: number;
  /** L1 froze (see `frozenAfterMs`) and was stopped. */
  readonly frozen?: boolean;
  /** The command printed nothing for `silentAfterMs` and L1 was stopped. */
  readonly silent?: boolean;
  /** The caller said the command hung (see `hung`) and L1 was stopped. */
  readonly unresponsive?: boolean;
  /** L1's kernel panicked: pvpanic had QEMU end it at once (its panic message may not have been printed yet). */
  readonly panicked?: boolean;
  /** Seconds from QEMU start until the command started (wall clock). */
  readonly bootSeconds: number | null;
  readonly totalSeconds: number;
}

/** A frozen L1 still ticks (measured: 0.4 % of a CPU); a busy one uses most of one. */
const FROZEN_CPU_SHARE = 0.05;
const WATCH_CHECK_MS = 15_000;
const CLOCK_TICKS_PER_SECOND = 100;
/** Before L1 is stopped for hanging, its CPUs are read this many times, this far apart (moving or stuck?). */
const CPU_LOOKS = 3;
const CPU_LOOK_GAP_MS = 1_000;
const MONITOR_SOCKET = 'qemu-monitor.sock';
/** L1 prints its stacks slowly (a software CPU, a serial line). */
const STACK_DUMP_WAIT_MS = 15_000;

/** CPU seconds a process has used so far (utime + stime from /proc), or null if it is gone. */
function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the command name: state is field 3; utime and stime are 14 and 15.
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return null;
  }
}

export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

function commandScript(argv: readonly string[], cwd: string): string {
  const env: string[] = [`export PATH=${shellQuote(process.env['PATH'] ?? DEFAULT_PATH)}`, 'export HOME=/tmp/home'];
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined && (PASSED_ENV.includes(name) || name.startsWith('BELLJAR_'))) {
      env.push(`export ${name}=${shellQuote(value)}`);
    }
  }
  // HOME differs inside (the host's is read-only there): point at the host's build cache explicitly.
  env.push(`export BELLJAR_CACHE=${shellQuote(cacheRoot())}`);
  env.push('export BELLJAR_IN_LAB=1', 'export NODE_DISABLE_COLORS=1');
  return [
    ...env,
    'mkdir -p "$HOME"',
    // The host writes a marker when the command starts, so boot time can be measured.
    `printf '\\n@@belljar-lab-command-start@@\\n'`,
    `cd ${shellQuote(cwd)} || exit ${LAB_EXIT.labFailure}`,
    `exec ${argv.map(shellQuote).join(' ')}`,
    '',
  ].join('\n');
}

const START_MARKER = '@@belljar-lab-command-start@@';

export async function runInLab(options: LabRunOptions): Promise<LabRunResult> {
  const log = options.log ?? (() => {});
  const output = options.output ?? ((chunk: string) => process.stdout.write(chunk));
  if (options.argv.length === 0) throw new Error('lab: no command given');
  const cwd = options.cwd ?? process.cwd();
  const image = await l1Image(log);
  const controlDir = mkdtempSync(join(tmpdir(), 'belljar-lab-'));
  const started = performance.now();
  try {
    const wantSymbols = !existsSync(image.symbols);
    writeFileSync(
      join(controlDir, CONTROL_FILES.env),
      `LAB_CWD=${shellQuote(cwd)}\nLAB_WANT_SYMBOLS=${wantSymbols ? 1 : 0}\n`,
    );
    writeFileSync(join(controlDir, CONTROL_FILES.command), commandScript(options.argv, cwd));
    const monitorSocket = join(controlDir, MONITOR_SOCKET);
    const args = l1QemuArgs({
      image,
      monitorSocket,
      workDir: cwd,
      controlDir,
      memoryMiB: options.memoryMiB ?? DEFAULT_LAB_MEMORY_MIB,
      cpus: DEFAULT_LAB_CPUS,
      ...(options.forwardPorts ? { forwardPorts: options.forwardPorts } : {}),
    });
    // stdin is L1's console input: the way to ask a hung L1 for its stacks.
    const qemu = spawn(QEMU, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    qemu.stdin.on('error', () => {}); // QEMU gone: nothing left to ask
    let bootSeconds: number | null = null;
    let pending = '';
    let stderr = '';
    let lastOutputAt = performance.now();
    type Hung = 'timeout' | 'frozen' | 'silent' | 'unresponsive';
    const state: { outcome: 'exited' | 'interrupted' | Hung } = { outcome: 'exited' };

    const running = () => qemu.exitCode === null && qemu.signalCode === null;
    const kill = () => {
      if (running()) qemu.kill('SIGKILL');
    };
    // A hung L1 is stopped after it has printed its stacks and its CPUs were read, so the log says where it was.
    const stopHung = (outcome: Hung) => {
      if (state.outcome !== 'exited') return;
      state.outcome = outcome;
      void (async () => {
        const askedAt = lastOutputAt;
        qemu.stdin.write(DUMP_REQUEST);
        log(`lab: asked L1 for its stacks; waiting ${STACK_DUMP_WAIT_MS / 1000} s for them`);
        await sleep(STACK_DUMP_WAIT_MS);
        if (!running()) return;
        const looks = await logCpuState(monitorSocket, image.symbols, log);
        // Alive, L1 would at least have echoed the request: with every CPU halted, no interrupt reaches it.
        const silent = lastOutputAt === askedAt;
        if (silent && looks.length === CPU_LOOKS && looks.every((cpus) => cpus.every((cpu) => cpu.halted))) {
          log(`${L1_FROZE_LINE}: every CPU halted in every look, and it did not take its console's interrupt`);
        }
        if (silent) await logApicState(monitorSocket, looks[0]?.length ?? 0, log);
      })().finally(kill);
    };
    const timer = setTimeout(() => stopHung('timeout'), options.timeoutMs ?? DEFAULT_LAB_TIMEOUT_MS);
    const onAbort = () => {
      state.outcome = 'interrupted';
      kill();
    };
    options.signal?.addEventListener('abort', onAbort);
    const onHung = () => {
      log('lab: the caller found the command hung; stopping L1');
      stopHung('unresponsive');
    };
    options.hung?.addEventListener('abort', onHung);
    const { frozenAfterMs, silentAfterMs } = options;
    const usage: { seconds: number; at: number }[] = [];
    const watch =
      frozenAfterMs === undefined && silentAfterMs === undefined
        ? undefined
        : setInterval(() => {
            if (state.outcome !== 'exited') return; // already being stopped
            const now = performance.now();
            if (silentAfterMs !== undefined && bootSeconds !== null && now - lastOutputAt >= silentAfterMs) {
              log(
                `lab: the command printed nothing for ${((now - lastOutputAt) / 1000).toFixed(0)} s: it hung; stopping L1`,
              );
              stopHung('silent');
              return;
            }
            if (frozenAfterMs === undefined || qemu.pid === undefined) return;
            const seconds = cpuSeconds(qemu.pid);
            if (seconds === null) return;
            usage.push({ seconds, at: now });
            while (usage.length > 1 && now - usage[1]!.at >= frozenAfterMs) usage.shift();
            const first = usage[0]!;
            const span = (now - first.at) / 1000;
            if (span * 1000 >= frozenAfterMs && (seconds - first.seconds) / span < FROZEN_CPU_SHARE) {
              log(
                `lab: L1 used ${(seconds - first.seconds).toFixed(1)} s of CPU in ${span.toFixed(0)} s: it froze; stopping it`,
              );
              stopHung('frozen');
            }
          }, WATCH_CHECK_MS);

    qemu.stdout.setEncoding('utf8');
    qemu.stdout.on('data', (data: string) => {
      lastOutputAt = performance.now();
      // L1's console is a serial line: it sends CR LF; pass on plain LF.
      let text = pending + data.replace(/\r/g, '');
      pending = '';
      if (bootSeconds === null) {
        const at = text.indexOf(START_MARKER);
        if (at < 0) {
          // Hold back a partial marker at the end of this chunk.
          const keep = Math.min(text.length, START_MARKER.length);
          pending = text.slice(-keep);
          text = text.slice(0, -keep);
        } else {
          bootSeconds = (performance.now() - started) / 1000;
          text = text.slice(0, at).replace(/\n$/, '') + text.slice(at + START_MARKER.length + 1);
        }
      }
      if (text) output(text);
    });
    qemu.stderr.setEncoding('utf8');
    qemu.stderr.on('data', (data: string) => (stderr += data));

    const spawnError = await new Promise<Error | null>((resolve) => {
      qemu.on('error', (error) => resolve(error));
      qemu.on('close', () => resolve(null));
    });
    clearTimeout(timer);
    clearInterval(watch);
    options.signal?.removeEventListener('abort', onAbort);
    options.hung?.removeEventListener('abort', onHung);
    if (pending) output(pending);
    if (wantSymbols) keepSymbols(join(controlDir, CONTROL_FILES.symbols), image.symbols);
    const totalSeconds = (performance.now() - started) / 1000;

    if (spawnError) {
      throw new Error(`lab: cannot start ${QEMU}: ${spawnError.message} (install Debian's qemu-system-x86)`);
    }
    if (state.outcome === 'timeout') {
      log(
        `lab: the command did not finish within ${(options.timeoutMs ?? DEFAULT_LAB_TIMEOUT_MS) / 1000} s; L1 killed`,
      );
      return { exitCode: LAB_EXIT.timeout, bootSeconds, totalSeconds };
    }
    if (state.outcome === 'interrupted') return { exitCode: LAB_EXIT.interrupted, bootSeconds, totalSeconds };
    if (state.outcome === 'frozen') return { exitCode: LAB_EXIT.labFailure, frozen: true, bootSeconds, totalSeconds };
    if (state.outcome === 'silent') return { exitCode: LAB_EXIT.labFailure, silent: true, bootSeconds, totalSeconds };
    if (state.outcome === 'unresponsive') {
      return { exitCode: LAB_EXIT.labFailure, unresponsive: true, bootSeconds, totalSeconds };
    }
    const exitFile = join(controlDir, CONTROL_FILES.exitCode);
    // QEMU's own errors (it did not start) share that exit status; they come with a message (not a warning).
    const qemuError = new RegExp(`^${QEMU}: (?!warning:)`, 'm').test(stderr);
    if (!existsSync(exitFile) && qemu.exitCode === QEMU_EXIT_L1_PANICKED && !qemuError) {
      log(L1_PANICKED_LINE);
      return { exitCode: LAB_EXIT.labFailure, panicked: true, bootSeconds, totalSeconds };
    }
    if (!existsSync(exitFile)) {
      log(`lab: L1 stopped without reporting an exit code (QEMU exit ${qemu.exitCode}). ${stderr.trim()}`);
      return { exitCode: LAB_EXIT.labFailure, bootSeconds, totalSeconds };
    }
    const exitCode = Number.parseInt(readFileSync(exitFile, 'utf8').trim(), 10);
    return { exitCode: Number.isNaN(exitCode) ? LAB_EXIT.labFailure : exitCode, bootSeconds, totalSeconds };
  } finally {
    rmSync(controlDir, { recursive: true, force: true });
  }
}

/** Keeps the symbols L1 wrote (it renames them into place once complete). */
function keepSymbols(written: string, kept: string): void {
  try {
    if (readSymbols(written).names.length === 0) return;
    copyFileSync(written, `${kept}.tmp`);
    renameSync(`${kept}.tmp`, kept);
  } catch {
    // Not written this run; the next run asks again.
  }
}

/** Logs where L1's CPUs are, a few times; a monitor that does not answer is said, not thrown. */
async function logCpuState(
  monitorSocket: string,
  symbolFile: string,
  log: (line: string) => void,
): Promise<CpuRegisters[][]> {
  let symbols: KernelSymbols | null = null;
  try {
    symbols = readSymbols(symbolFile);
  } catch {
    // None recorded yet: addresses stay unnamed.
  }
  const looks: CpuRegisters[][] = [];
  for (let look = 1; look <= CPU_LOOKS; look++) {
    try {
      const cpus = parseRegisters(await monitorCommand(monitorSocket, 'info registers -a'));
      for (const line of describeCpus(cpus, symbols)) log(`lab: L1 look ${look}/${CPU_LOOKS}: ${line}`);
      looks.push(cpus);
    } catch (error) {
      log(`lab: cannot read L1's CPUs: ${(error as Error).message}`);
      break;
    }
    if (look < CPU_LOOKS) await sleep(CPU_LOOK_GAP_MS);
  }
  return looks;
}

/** Logs each CPU's local APIC (timer, vectors pending and in service): why interrupts do not reach a silent L1. */
async function logApicState(monitorSocket: string, cpuCount: number, log: (line: string) => void): Promise<void> {
  for (let cpu = 0; cpu < cpuCount; cpu++) {
    try {
      // microvm numbers APIC IDs like CPUs.
      log(`lab: L1 CPU ${cpu} APIC: ${summarizeApic(await monitorCommand(monitorSocket, `info lapic ${cpu}`))}`);
    } catch (error) {
      log(`lab: cannot read L1's APIC ${cpu}: ${(error as Error).message}`);
      return;
    }
  }
}
