/**
 * One sandbox: its VMM child process, its temp directory, its state
 * (starting → running → closing → closed, or failed with a reason) and its
 * display. The child's messages are checked (vmm/sandbox/control.ts) before
 * use; a child that breaks the protocol, crashes or hangs on close is killed
 * and the sandbox shows `failed` or `closed`, never a hung window.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { encodeFrame } from '../contract/frame-wire.js';
import type { BootStage, InputEvent, SandboxState, SandboxSummary } from '../contract/ipc.js';
import {
  ControlError,
  parseChildMessage,
  type ChildMessage,
  type FrameMessage,
  type ParentMessage,
  type SandboxSpec,
} from '../../vmm/sandbox/control.js';
import type { DisplaySink } from './session-service.js';

/** The VMM process entry (built next to this file's dist/ tree). */
export const SANDBOX_PROCESS_SCRIPT = new URL('../../vmm/sandbox/sandbox-process.js', import.meta.url).pathname;
/** How long a VMM may take to stop after `shutdown` before it is killed. */
export const STOP_GRACE_MS = 5000;
/** How often the VMM's resident memory is read. */
const RSS_POLL_MS = 2000;
const STDERR_TAIL_CHARS = 4096;

export interface SessionItem {
  readonly title: string;
  readonly item: SandboxSummary['item'];
  /** Removed when the session ends. */
  readonly tempDir: string;
}

export interface SessionEvents {
  changed(): void;
  ended(): void;
}

export class SandboxSession {
  state: SandboxState = 'starting';
  stage: BootStage = 'booting';
  error: string | undefined;
  page: SandboxSummary['page'];
  rssMiB: number | undefined;
  display: { width: number; height: number } | undefined;
  /** The display size last asked for (the window's display area), for diagnostics. */
  requestedDisplay: { width: number; height: number } | undefined;
  /** ms since the VMM process started, for the report: agent ready, first frame with content. */
  readonly timings: { guestReadyMs?: number; firstContentMs?: number; shownMs?: number } = {};
  /** The guest's last console output once the VMM has ended (for diagnosis; untrusted text). */
  consoleTail: string | undefined;
  /** Input events and display resizes passed to the VMM (diagnostics). */
  readonly counts = { inputEvents: 0, resizes: 0, frames: 0 };
  private readonly child: ChildProcess;
  private sink: DisplaySink | null = null;
  /** Acknowledgements owed to the VMM for frames handed to the current sink. */
  private readonly owedAcks = new Set<() => void>();
  /** The VMM process's last stderr lines (its own diagnostics). */
  stderrTail = '';
  private readonly rssTimer: NodeJS.Timeout;
  private exitReport: Extract<ChildMessage, { type: 'exit' }> | undefined;
  readonly exited: Promise<void>;

  constructor(
    readonly id: string,
    readonly item: SessionItem,
    readonly openedAt: number,
    readonly spec: SandboxSpec,
    private readonly events: SessionEvents,
    options: { readonly execPath?: string } = {},
  ) {
    this.child = fork(SANDBOX_PROCESS_SCRIPT, [], {
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      execArgv: [],
      ...(options.execPath ? { execPath: options.execPath } : {}),
      // Inside Electron, fork runs Electron's binary; this makes it plain Node.
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
    });
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (text: string) => {
      this.stderrTail = (this.stderrTail + text).slice(-STDERR_TAIL_CHARS);
    });
    this.child.on('message', (raw) => this.onMessage(raw));
    this.exited = new Promise((resolve) => {
      // 'close', not 'exit': it comes after the last IPC message (the exit
      // report and console tail), which 'exit' can overtake.
      this.child.once('close', (code, signal) => {
        this.onChildExit(code, signal);
        resolve();
      });
      this.child.once('error', (error) => {
        this.failWith(`the VMM process could not start: ${error.message}`);
        if (this.child.pid === undefined) {
          // Never spawned: no 'exit' follows, so clean up here what onChildExit would.
          clearInterval(this.rssTimer);
          rmSync(this.item.tempDir, { recursive: true, force: true });
          this.events.ended();
        }
        resolve();
      });
    });
    this.rssTimer = setInterval(() => this.pollRss(), RSS_POLL_MS);
    this.rssTimer.unref();
    this.post({ type: 'start', spec });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  summary(): SandboxSummary {
    return {
      id: this.id,
      title: this.item.title,
      item: this.item.item,
      state: this.state,
      stage: this.stage,
      openedAt: this.openedAt,
      memoryMiB: this.spec.memoryMiB,
      network: this.spec.network === 'web' ? 'web' : 'none',
      ...(this.error ? { error: this.error } : {}),
      ...(this.page ? { page: this.page } : {}),
      ...(this.rssMiB === undefined ? {} : { rssMiB: this.rssMiB }),
      ...(this.display ? { display: this.display } : {}),
    };
  }

  input(events: readonly InputEvent[]): void {
    if (this.state !== 'running' && this.state !== 'starting') return;
    this.counts.inputEvents += events.length;
    this.post({ type: 'input', events });
  }

  resize(width: number, height: number): void {
    if (this.state !== 'running' && this.state !== 'starting') return;
    this.counts.resizes++;
    this.requestedDisplay = { width, height };
    this.post({ type: 'resize', width, height });
  }

  attachDisplay(sink: DisplaySink): () => void {
    for (const ack of [...this.owedAcks]) ack();
    this.sink = sink;
    this.post({ type: 'refresh' });
    return () => {
      if (this.sink !== sink) return;
      this.sink = null;
      // Frames the detached consumer never acknowledged must not stall the VMM's exporter.
      for (const ack of [...this.owedAcks]) ack();
    };
  }

  /** Stops the VMM (killing it after the grace period) and removes the temp files. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state !== 'failed') this.setState('closing');
    this.post({ type: 'shutdown' });
    const killer = setTimeout(() => this.child.kill('SIGKILL'), STOP_GRACE_MS);
    await this.exited;
    clearTimeout(killer);
    this.setState('closed');
  }

  private post(message: ParentMessage): void {
    if (this.child.connected) this.child.send(message, (error) => error && undefined);
  }

  private onMessage(raw: unknown): void {
    let message: ChildMessage;
    try {
      message = parseChildMessage(raw);
    } catch (error) {
      // Our own VMM breaking the protocol means it cannot be trusted any more.
      this.failWith(`the VMM sent a bad message (${(error as ControlError).message})`);
      this.child.kill('SIGKILL');
      return;
    }
    switch (message.type) {
      case 'stage':
        this.stage = message.stage;
        if (message.stage === 'guest-ready') this.timings.guestReadyMs = message.ms;
        if (message.stage === 'shown') this.timings.shownMs = message.ms;
        if (this.state === 'starting' && message.stage !== 'booting') this.setState('running');
        else this.events.changed();
        break;
      case 'page':
        this.page = {
          state: message.state,
          ...(message.title === undefined ? {} : { title: message.title }),
        };
        if (message.state === 'error' && message.error) this.error = message.error;
        this.events.changed();
        break;
      case 'first-content':
        this.timings.firstContentMs = message.ms;
        break;
      case 'frame':
        this.onFrame(message);
        break;
      case 'exit':
        this.exitReport = message;
        if (message.console) this.consoleTail = message.console;
        break;
    }
  }

  private onFrame(frame: FrameMessage): void {
    this.counts.frames++;
    if (frame.enabled && (this.display?.width !== frame.width || this.display?.height !== frame.height)) {
      this.display = { width: frame.width, height: frame.height };
      this.events.changed();
    }
    const sink = this.sink;
    if (!sink) {
      this.post({ type: 'frame-ack' });
      return;
    }
    const ack = () => {
      if (!this.owedAcks.delete(ack)) return;
      this.post({ type: 'frame-ack' });
    };
    this.owedAcks.add(ack);
    sink.send(encodeFrame(frame), ack);
  }

  private onChildExit(code: number | null, signal: NodeJS.Signals | null): void {
    clearInterval(this.rssTimer);
    rmSync(this.item.tempDir, { recursive: true, force: true });
    if (this.state === 'closing' || this.state === 'closed' || this.state === 'failed') {
      this.events.ended();
      return;
    }
    const report = this.exitReport;
    let reason: string;
    if (report?.kind === 'error') reason = report.detail ?? 'the VMM failed';
    else if (report?.kind === 'poweroff') reason = 'the sandbox shut itself down';
    else if (report?.kind === 'panic') reason = 'the sandbox’s system crashed (kernel panic)';
    else if (report?.kind === 'reboot') reason = 'the sandbox’s system restarted itself';
    else if (report?.kind === 'triple-fault') reason = 'the sandbox’s processor reset (triple fault)';
    else if (signal) reason = `the VMM process was killed (${signal})`;
    else reason = `the VMM process ended unexpectedly (exit code ${code})`;
    const lastError = this.stderrTail.trim().split('\n').pop();
    this.failWith(lastError && !report ? `${reason}: ${lastError}` : reason);
    this.events.ended();
  }

  private failWith(reason: string): void {
    if (this.state === 'failed' || this.state === 'closed') return;
    this.error = reason;
    this.setState('failed');
  }

  private setState(state: SandboxState): void {
    this.state = state;
    this.events.changed();
  }

  private pollRss(): void {
    const pid = this.child.pid;
    if (pid === undefined) return;
    try {
      const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match) {
        this.rssMiB = Math.round(Number(match[1]) / 1024);
        this.events.changed();
      }
    } catch {
      // The process is gone; its exit is handled elsewhere.
    }
  }
}
