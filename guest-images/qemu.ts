/**
 * Runs the guest under QEMU's `microvm` machine with ACPI — the device
 * discovery path our own VMM follows (virtio-mmio devices in the DSDT as
 * `LNRO0005`, modern virtio, 16550 console on ttyS0) — for the smoke test.
 * Owns the QEMU child process, its QMP monitor and the agent's stream, and
 * cleans all of them up however the run ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import { createServer, createConnection, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { AGENT_SERIAL_PORT_NAME, KERNEL_CMDLINE } from './config.js';
import type { GuestManifest } from './build.js';
import { encodeFrame, FrameDecoder, ProtocolError, type GuestMessage, type HostMessage } from './protocol.js';

export interface QemuGuestOptions {
  readonly manifest: GuestManifest;
  /** Item disk images, attached read-only after the rootfs (/dev/vdb, /dev/vdc, …). */
  readonly itemDisks: readonly string[];
  /** Directory for sockets and screendumps (the caller removes it). */
  readonly workDir: string;
  readonly memoryMb?: number;
  readonly cpus?: number;
  /**
   * QEMU CPU model; `BELLJAR_QEMU_CPU` overrides it for experiments. Default
   * `Nehalem` (SSE4.2, no AVX): under TCG, Chromium reached DevTools in
   * 29.5 s and the first page 46.6 s after power-on, against 38.6 s and 63.1 s
   * with `max`, whose AVX paths TCG emulates slowly.
   */
  readonly cpu?: string;
  readonly extraCmdline?: readonly string[];
  /** Each console line of the guest. */
  readonly onConsole?: (line: string) => void;
}

/**
 * QEMU's software CPU reads the host's TSC, so a TCG guest's TSC runs at the
 * host's rate. Telling the guest kernel that rate (`tsc_early_khz=`) skips
 * its calibration against the emulated PIT, which fails now and then under
 * TCG ("Unable to calibrate against PIT") and stalls the boot. Used for the
 * smoke test's guest and for the KVM lab's L1.
 */
export function hostTscKhz(cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')): number | null {
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1]);
  return Number.isFinite(mhz) && mhz > 0 ? Math.round(mhz * 1000) : null;
}

/** The QEMU command line for the guest (exported for the docs and tests). */
export function qemuArgs(opts: QemuGuestOptions, paths: { qmp: string; agent: string }): string[] {
  const drives = [opts.manifest.rootfs.path, ...opts.itemDisks].flatMap((file, i) => [
    '-drive',
    `id=disk${i},file=${file},format=raw,if=none,readonly=on`,
    '-device',
    `virtio-blk-device,drive=disk${i}`,
  ]);
  return [
    ...[
      '-M',
      'microvm,acpi=on',
      '-accel',
      // `BELLJAR_QEMU_ACCEL=kvm` runs the same guest on KVM (inside the KVM
      // lab: a control for how often nested SVM on a software CPU resets it).
      process.env['BELLJAR_QEMU_ACCEL'] ?? 'tcg,thread=multi',
      '-cpu',
      process.env['BELLJAR_QEMU_CPU'] ?? opts.cpu ?? 'Nehalem',
    ],
    ...['-smp', String(opts.cpus ?? 2), '-m', `${opts.memoryMb ?? 2048}M`],
    ...['-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio', '-no-reboot'],
    ...['-global', 'virtio-mmio.force-legacy=false'],
    ...drives,
    ...['-device', 'virtio-gpu-device'],
    // The input devices our VMM gives the guest (the viewer's sway expects both).
    ...['-device', 'virtio-keyboard-device', '-device', 'virtio-tablet-device'],
    ...['-device', 'virtio-rng-device'],
    ...['-device', 'virtio-serial-device'],
    ...['-chardev', `socket,id=agent,path=${paths.agent}`],
    ...['-device', `virtserialport,chardev=agent,name=${AGENT_SERIAL_PORT_NAME}`],
    ...['-qmp', `unix:${paths.qmp},server=on,wait=off`],
    ...['-kernel', opts.manifest.kernel.path, '-initrd', opts.manifest.initramfs.path],
    ...[
      '-append',
      [...KERNEL_CMDLINE, 'belljar.agent=virtio-port', ...tscCmdline(), ...(opts.extraCmdline ?? [])].join(' '),
    ],
  ];
}

function tscCmdline(): string[] {
  const khz = hostTscKhz();
  return khz === null ? [] : [`tsc_early_khz=${khz}`];
}

type Waiter = { match: (m: GuestMessage) => boolean; resolve: (m: GuestMessage) => void };

export class QemuGuest {
  readonly startedAt = performance.now();
  private readonly child: ChildProcess;
  private qmp: Socket | undefined;
  private qmpBuffer = '';
  private qmpWaiters: ((reply: Record<string, unknown>) => void)[] = [];
  private agentServer: Server;
  private agent: Socket | undefined;
  private readonly decoder = new FrameDecoder();
  private readonly messages: GuestMessage[] = [];
  private waiters: Waiter[] = [];
  private exited = false;
  /** Serial console and QEMU's own stderr, in arrival order (for a failure's dump). */
  readonly consoleLines: string[] = [];
  /** The guest's serial console only. */
  readonly serialLines: string[] = [];
  readonly protocolErrors: ProtocolError[] = [];

  private constructor(child: ChildProcess, agentServer: Server) {
    this.child = child;
    this.agentServer = agentServer;
    child.on('exit', () => {
      this.exited = true;
    });
  }

  static async start(opts: QemuGuestOptions): Promise<QemuGuest> {
    const paths = { qmp: join(opts.workDir, 'qmp.sock'), agent: join(opts.workDir, 'agent.sock') };
    // A previous boot in the same directory may have left its sockets behind.
    for (const path of Object.values(paths)) rmSync(path, { force: true });
    // QEMU connects to the agent socket as a client at start-up, so listen first.
    const agentServer = createServer();
    agentServer.listen(paths.agent);
    await once(agentServer, 'listening');
    const child = spawn('qemu-system-x86_64', qemuArgs(opts, paths), { stdio: ['ignore', 'pipe', 'pipe'] });
    const guest = new QemuGuest(child, agentServer);
    agentServer.on('connection', (socket) => guest.attachAgent(socket));
    // Each stream is split into lines on its own: a partial line of one must not join the other's.
    const lineReader = (serial: boolean) => {
      let tail = '';
      return (chunk: Buffer): void => {
        tail += chunk.toString('utf8');
        const lines = tail.split(/\r?\n/);
        tail = lines.pop() ?? '';
        for (const line of lines) {
          guest.consoleLines.push(line);
          if (serial) guest.serialLines.push(line);
          opts.onConsole?.(line);
        }
      };
    };
    child.stdout?.on('data', lineReader(true));
    child.stderr?.on('data', lineReader(false));
    const spawned = await Promise.race([once(child, 'spawn').then(() => true), once(child, 'error').then(() => false)]);
    if (!spawned) throw new Error('qemu-system-x86_64 did not start (is Debian package qemu-system-x86 installed?)');
    await guest.connectQmp(paths.qmp);
    return guest;
  }

  private attachAgent(socket: Socket): void {
    this.agent = socket;
    socket.on('data', (chunk: Buffer) => {
      let out: (GuestMessage | ProtocolError)[];
      try {
        out = this.decoder.push(chunk);
      } catch (error) {
        this.protocolErrors.push(error instanceof ProtocolError ? error : new ProtocolError(String(error)));
        socket.destroy();
        return;
      }
      for (const m of out) {
        if (m instanceof ProtocolError) {
          this.protocolErrors.push(m);
          continue;
        }
        this.messages.push(m);
        const ready = this.waiters.filter((w) => w.match(m));
        this.waiters = this.waiters.filter((w) => !w.match(m));
        for (const w of ready) w.resolve(m);
      }
    });
    socket.on('error', () => {});
  }

  private async connectQmp(path: string): Promise<void> {
    const deadline = performance.now() + 10_000;
    for (;;) {
      try {
        const socket = createConnection(path);
        await once(socket, 'connect');
        this.qmp = socket;
        break;
      } catch (error) {
        if (this.exited)
          throw new Error(`QEMU exited at start:\n${this.consoleLines.slice(-20).join('\n')}`, { cause: error });
        if (performance.now() > deadline) throw new Error('QEMU monitor socket did not appear', { cause: error });
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    this.qmp.on('data', (chunk: Buffer) => {
      this.qmpBuffer += chunk.toString('utf8');
      let nl: number;
      while ((nl = this.qmpBuffer.indexOf('\n')) >= 0) {
        const line = this.qmpBuffer.slice(0, nl).trim();
        this.qmpBuffer = this.qmpBuffer.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('return' in msg || 'error' in msg) this.qmpWaiters.shift()?.(msg);
      }
    });
    this.qmp.on('error', () => {});
    await this.qmpCommand('qmp_capabilities');
  }

  /** Sends a QMP command and resolves with its `return` (rejects on `error`). */
  qmpCommand(execute: string, args?: Record<string, unknown>): Promise<unknown> {
    const qmp = this.qmp;
    if (!qmp) return Promise.reject(new Error('QMP not connected'));
    return new Promise((resolve, reject) => {
      this.qmpWaiters.push((reply) => {
        if ('error' in reply) reject(new Error(`QMP ${execute}: ${JSON.stringify(reply['error'])}`));
        else resolve(reply['return']);
      });
      qmp.write(`${JSON.stringify(args ? { execute, arguments: args } : { execute })}\n`);
    });
  }

  /** Writes the guest display to a file (PPM, or PNG for people to look at). */
  async screendump(file: string, format: 'ppm' | 'png' = 'ppm'): Promise<void> {
    await this.qmpCommand('screendump', format === 'png' ? { filename: file, format } : { filename: file });
  }

  send(message: HostMessage): void {
    if (!this.agent) throw new Error('the agent has not connected');
    this.agent.write(encodeFrame(message));
  }

  /** Resolves with the first message (already received or future) that matches, or rejects after `timeoutMs`. */
  waitFor(match: (m: GuestMessage) => boolean, timeoutMs: number, what: string): Promise<GuestMessage> {
    const seen = this.messages.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${(timeoutMs / 1000).toFixed(0)} s waiting for ${what}`));
      }, timeoutMs);
      const waiter: Waiter = {
        match,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      this.waiters.push(waiter);
    });
  }

  get hasExited(): boolean {
    return this.exited;
  }

  /** Ends QEMU (QMP quit, then SIGKILL if it lingers) and closes every socket. */
  async stop(): Promise<void> {
    if (!this.exited) {
      const exited = once(this.child, 'exit');
      this.qmpCommand('quit').catch(() => {});
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    this.qmp?.destroy();
    this.agent?.destroy();
    await new Promise<void>((resolve) => this.agentServer.close(() => resolve()));
  }

  /** Synchronous last resort for signal handlers. */
  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }
}
