/**
 * The sandbox sessions, without Electron: `open(item)` checks the item on the
 * host (size, type from its content, URL scheme) before anything boots,
 * writes the read-only item disk into a private temp directory, and starts a
 * VMM process for it (sandbox-session.ts). Hosted by the Electron main
 * process and by the test bridge alike.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { classifyItem, classifyUrl, itemDiskImage, readItemFile } from '../../guest-images/item.js';
import type { InputEvent, OpenRequest, SandboxId, SandboxSummary } from '../contract/ipc.js';
import type { SandboxSpec } from '../../vmm/sandbox/control.js';
import { findGuestImage, type GuestImage } from './guest-image.js';
import { SandboxSession, type SessionItem } from './sandbox-session.js';
import { OpenRefusedError, UnknownSandboxError, type DisplaySink, type SessionService } from './session-service.js';

export interface SessionManagerOptions {
  /** Default: the built guest image (latest.json in the cache). */
  readonly guestImage?: () => GuestImage | { readonly missing: string };
  /** Guest RAM per sandbox: Chromium needs about 1 GiB. */
  readonly memoryMiB?: number;
  readonly vcpus?: number;
  /** The guest's first display size, until the window reports its own. */
  readonly display?: { readonly width: number; readonly height: number };
  /** Sandboxes open at once, at most. */
  readonly maxSandboxes?: number;
  /** Give up on a guest whose agent is not ready by then (the KVM lab needs minutes). */
  readonly agentTimeoutMs?: number;
  /** Files open without network; URLs get the public web through the egress proxy. */
  readonly allowForTests?: readonly string[];
  /**
   * For diagnosis; either way the guest's kernel prints warnings with their backtraces.
   * `viewer`: the guest copies its compositor's and browser's log to the serial console.
   * `input`: it copies the pointer and keyboard events its compositor sends the browser.
   */
  readonly guestDebug?: 'viewer' | 'input';
  /** Node binary for the VMM processes (default: this process's). */
  readonly execPath?: string;
}

export const SESSION_DEFAULTS = {
  memoryMiB: 1536,
  vcpus: 2,
  display: { width: 1280, height: 800 },
  maxSandboxes: 8,
  agentTimeoutMs: 5 * 60_000,
} as const;

const URL_TITLE_CHARS = 80;
/** With guestDebug: kernel warnings (soft lockups, RCU stalls) print their backtraces too; the last loglevel= wins. */
const DEBUG_LOGLEVEL = 'loglevel=5';

export class SessionManager implements SessionService {
  private readonly sessions = new Map<SandboxId, SandboxSession>();
  private readonly listeners = new Set<(list: readonly SandboxSummary[]) => void>();
  private readonly options: SessionManagerOptions;

  constructor(options: SessionManagerOptions = {}) {
    this.options = options;
  }

  list(): readonly SandboxSummary[] {
    return [...this.sessions.values()].map((s) => s.summary());
  }

  /** The session's object, for tests and the bridge's diagnostics (pid, timings). */
  session(id: SandboxId): SandboxSession | undefined {
    return this.sessions.get(id);
  }

  async open(request: OpenRequest): Promise<SandboxSummary> {
    const limit = this.options.maxSandboxes ?? SESSION_DEFAULTS.maxSandboxes;
    const live = [...this.sessions.values()].filter((s) => s.state === 'starting' || s.state === 'running').length;
    if (live >= limit) throw new OpenRefusedError(`${limit} sandboxes are open already; close one first.`);
    const image = (this.options.guestImage ?? findGuestImage)();
    if ('missing' in image) throw new OpenRefusedError(image.missing);

    const tempDir = mkdtempSync(join(tmpdir(), 'belljar-sandbox-'));
    try {
      const { item, extra } = this.prepareItem(request, tempDir);
      const spec: SandboxSpec = {
        kernel: image.kernel,
        initrd: image.initrd,
        rootfs: image.rootfs,
        cmdline: this.options.guestDebug
          ? `${image.cmdline} belljar.debug=${this.options.guestDebug} ${DEBUG_LOGLEVEL}`
          : image.cmdline,
        memoryMiB: this.options.memoryMiB ?? SESSION_DEFAULTS.memoryMiB,
        vcpus: this.options.vcpus ?? SESSION_DEFAULTS.vcpus,
        display: this.options.display ?? SESSION_DEFAULTS.display,
        // A file never needs the network; a link needs the public web (and nothing else).
        network: request.kind === 'url' ? 'web' : 'none',
        ...(this.options.allowForTests ? { allowForTests: this.options.allowForTests } : {}),
        agentTimeoutMs: this.options.agentTimeoutMs ?? SESSION_DEFAULTS.agentTimeoutMs,
        ...extra,
      };
      const id = `sbx-${randomBytes(6).toString('hex')}`;
      const session = new SandboxSession(
        id,
        item,
        Date.now(),
        spec,
        {
          changed: () => this.emit(),
          ended: () => this.emit(),
        },
        this.options.execPath ? { execPath: this.options.execPath } : {},
      );
      this.sessions.set(id, session);
      this.emit();
      return session.summary();
    } catch (error) {
      rmSync(tempDir, { recursive: true, force: true });
      throw error;
    }
  }

  async close(id: SandboxId): Promise<void> {
    const session = this.get(id);
    await session.close();
    this.sessions.delete(id);
    this.emit();
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.sessions.keys()].map((id) => this.close(id)));
  }

  input(id: SandboxId, events: readonly InputEvent[]): void {
    this.get(id).input(events);
  }

  resize(id: SandboxId, width: number, height: number): void {
    this.get(id).resize(width, height);
  }

  onChange(listener: (list: readonly SandboxSummary[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  attachDisplay(id: SandboxId, sink: DisplaySink): () => void {
    return this.get(id).attachDisplay(sink);
  }

  private get(id: SandboxId): SandboxSession {
    const session = this.sessions.get(id);
    if (!session) throw new UnknownSandboxError(id);
    return session;
  }

  private emit(): void {
    const list = this.list();
    for (const listener of this.listeners) listener(list);
  }

  /** Checks the item on the host and returns what the sandbox gets (item disk or URL). */
  private prepareItem(
    request: OpenRequest,
    tempDir: string,
  ): { item: SessionItem; extra: Pick<SandboxSpec, 'itemDisk'> | Pick<SandboxSpec, 'url'> } {
    if (request.kind === 'url') {
      const url = classifyUrl(request.url);
      if (!url.ok) throw new OpenRefusedError(url.reason);
      const host = new URL(url.url).host || url.url;
      return {
        item: { title: host.slice(0, URL_TITLE_CHARS), item: { kind: 'url', url: url.url }, tempDir },
        extra: { url: url.url },
      };
    }
    const name = basename(request.path);
    const read = readItemFile(request.path);
    if (!read.ok) throw new OpenRefusedError(`${name}: ${read.reason}`);
    const accepted = classifyItem(name, read.bytes);
    if (!accepted.ok) throw new OpenRefusedError(`${name}: ${accepted.reason}`);
    const itemDisk = join(tempDir, 'item.img');
    writeFileSync(itemDisk, itemDiskImage(accepted, read.bytes), { mode: 0o600 });
    return { item: { title: name, item: { kind: 'file', name }, tempDir }, extra: { itemDisk } };
  }
}
