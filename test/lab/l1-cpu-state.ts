/**
 * Where L1's CPUs are, read from QEMU's human monitor: for a lab run that
 * stopped answering, this says whether L1 spins in one place, idles, or moves,
 * and names the kernel function (from L1's /proc/kallsyms, recorded once:
 * L1 boots with `nokaslr`, so the addresses hold for every run). A CPU
 * running the nested guest shows the nested guest's registers (named from
 * L1's table too: right only when it runs the same kernel unrandomized).
 */
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';

/** The monitor answers within this, or the dump is skipped. */
const MONITOR_TIMEOUT_MS = 5_000;
const MONITOR_PROMPT = '(qemu) ';

export interface CpuRegisters {
  readonly cpu: number;
  readonly rip: bigint;
  readonly cpl: number;
  readonly halted: boolean;
}

/** Sends one HMP command and returns its output (without the echo and prompt). */
export function monitorCommand(socketPath: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let text = '';
    let sent = false;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`QEMU's monitor did not answer ${JSON.stringify(command)} within ${MONITOR_TIMEOUT_MS} ms`));
    }, MONITOR_TIMEOUT_MS);
    socket.setEncoding('utf8');
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('data', (data: string) => {
      text += data;
      if (!text.endsWith(MONITOR_PROMPT)) return;
      if (!sent) {
        // The greeting and first prompt are in; ask.
        sent = true;
        text = '';
        socket.write(`${command}\n`);
        return;
      }
      clearTimeout(timer);
      socket.end();
      const body = text.slice(0, -MONITOR_PROMPT.length).replace(/\r/g, '');
      // The monitor echoes the command line first.
      resolve(body.slice(body.indexOf('\n') + 1));
    });
  });
}

/** Parses `info registers -a` (QEMU's x86 TCG format). */
export function parseRegisters(text: string): CpuRegisters[] {
  const cpus: CpuRegisters[] = [];
  for (const block of text.split(/^CPU#/m).slice(1)) {
    const cpu = Number.parseInt(block, 10);
    const rip = /\b[RE]IP=([0-9a-f]{8,16})\b/.exec(block)?.[1]; // EIP outside long mode
    const cpl = /\bCPL=(\d)\b/.exec(block)?.[1];
    const halted = /\bHLT=(\d)\b/.exec(block)?.[1];
    if (Number.isNaN(cpu) || rip === undefined || cpl === undefined || halted === undefined) continue;
    cpus.push({ cpu, rip: BigInt(`0x${rip}`), cpl: Number(cpl), halted: halted === '1' });
  }
  return cpus;
}

export interface KernelSymbols {
  /** Text symbols, sorted by address. */
  readonly addresses: readonly bigint[];
  readonly names: readonly string[];
}

/** Reads the text symbols of a table in /proc/kallsyms' format (`address type name[\t[module]]`). */
export function readSymbols(path: string): KernelSymbols {
  const entries: { address: bigint; name: string }[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const match = /^([0-9a-f]{16}) [tT] (\S+)(?:\s+(\[\S+\]))?$/.exec(line);
    if (match)
      entries.push({ address: BigInt(`0x${match[1]}`), name: match[3] ? `${match[2]} ${match[3]}` : match[2]! });
  }
  entries.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  return { addresses: entries.map((e) => e.address), names: entries.map((e) => e.name) };
}

/** x86-64 Linux loads modules (kvm, kvm_amd) from here up. */
const MODULES_START = 0xffffffffc0000000n;

/** `function+0xoffset` (with `[module]` for a module's), or what kind of address it is when no symbol names it. */
export function symbolize(symbols: KernelSymbols | null, rip: bigint, cpl: number): string {
  if (cpl === 3) return 'user space';
  const first = symbols?.addresses[0];
  if (symbols === null || first === undefined || rip < first) {
    return rip >= MODULES_START ? 'module code' : symbols === null ? 'no symbols' : "below the kernel's text";
  }
  let low = 0;
  let high = symbols.addresses.length - 1;
  while (low < high) {
    const mid = (low + high + 1) >> 1;
    if (symbols.addresses[mid]! <= rip) low = mid;
    else high = mid - 1;
  }
  const name = symbols.names[low]!;
  // Past the kernel's last symbol in module space: a module the table does not hold.
  if (rip >= MODULES_START && !name.includes('[')) return 'module code';
  const [fn, module] = name.split(' ');
  return `${fn}+0x${(rip - symbols.addresses[low]!).toString(16)}${module ? ` ${module}` : ''}`;
}

/** One line per CPU, e.g. `CPU 0 at ffffffff81a2b3c4 (native_safe_halt+0xb), CPL 0, halted`. */
export function describeCpus(cpus: readonly CpuRegisters[], symbols: KernelSymbols | null): string[] {
  return cpus.map(
    (c) =>
      `CPU ${c.cpu} at ${c.rip.toString(16).padStart(16, '0')} (${symbolize(symbols, c.rip, c.cpl)}), ` +
      `CPL ${c.cpl}${c.halted ? ', halted' : ''}`,
  );
}

/** The lines of `info lapic` that say whether interrupts can be taken: the timer, and the vectors pending and in service. */
const APIC_LINES = /^(LVTT|Timer|ISR|IRR|APR)\b/;

/** One line from `info lapic N`, e.g. `LVTT 0x000400ec … tsc-deadline (vec 236); ISR (none); IRR 236; APR 0x00 TPR 0x00 …`. */
export function summarizeApic(text: string): string {
  return text
    .split('\n')
    .filter((line) => APIC_LINES.test(line))
    .map((line) => line.replace(/\s+/g, ' ').trim())
    .join('; ');
}
