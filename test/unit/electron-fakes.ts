/**
 * Fake Electron-side objects for the electron-*.test.ts files: a session
 * service that records calls, frames and senders shaped like Electron's, and
 * an event-listener recorder. Nothing here loads Electron.
 */
import type { InputEvent, OpenRequest, SandboxId, SandboxSummary } from '../../electron/contract/ipc.js';
import {
  OpenRefusedError,
  UnknownSandboxError,
  type DisplaySink,
  type SessionService,
} from '../../electron/sessions/session-service.js';
import type { FrameLike, SenderEvent, TrustedContents } from '../../electron/app/sender.js';

export function summary(id: string, overrides: Partial<SandboxSummary> = {}): SandboxSummary {
  return {
    id,
    title: `item ${id}`,
    item: { kind: 'file', name: `${id}.pdf` },
    state: 'running',
    stage: 'shown',
    openedAt: 0,
    memoryMiB: 512,
    network: 'none',
    ...overrides,
  };
}

export class FakeSessions implements SessionService {
  readonly calls: string[] = [];
  readonly opened: OpenRequest[] = [];
  readonly inputs: { id: SandboxId; events: readonly InputEvent[] }[] = [];
  readonly resizes: { id: SandboxId; width: number; height: number }[] = [];
  readonly sinks = new Map<SandboxId, DisplaySink>();
  readonly detached: SandboxId[] = [];
  readonly known = new Set<SandboxId>(['sb-1', 'sb-2']);
  readonly changeListeners = new Set<(list: readonly SandboxSummary[]) => void>();
  /** What open() does: resolve with a summary, or reject for paths containing "refuse". */
  closeAllImpl: () => Promise<void> = async () => {};
  internalFailure: Error | null = null;

  list(): readonly SandboxSummary[] {
    this.calls.push('list');
    return [...this.known].map((id) => summary(id));
  }
  async open(request: OpenRequest): Promise<SandboxSummary> {
    this.calls.push('open');
    if (this.internalFailure) throw this.internalFailure;
    const what = request.kind === 'file' ? request.path : request.url;
    if (what.includes('refuse')) throw new OpenRefusedError(`cannot open ${what}`);
    this.opened.push(request);
    const id = `sb-${this.opened.length + 10}`;
    this.known.add(id);
    return summary(id);
  }
  async close(id: SandboxId): Promise<void> {
    this.calls.push(`close ${id}`);
    if (!this.known.delete(id)) throw new UnknownSandboxError(id);
  }
  closeAll(): Promise<void> {
    this.calls.push('closeAll');
    return this.closeAllImpl();
  }
  input(id: SandboxId, events: readonly InputEvent[]): void {
    if (!this.known.has(id)) throw new UnknownSandboxError(id);
    this.inputs.push({ id, events });
  }
  resize(id: SandboxId, width: number, height: number): void {
    if (!this.known.has(id)) throw new UnknownSandboxError(id);
    this.resizes.push({ id, width, height });
  }
  onChange(listener: (list: readonly SandboxSummary[]) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }
  emitChange(list: readonly SandboxSummary[]): void {
    for (const listener of this.changeListeners) listener(list);
  }
  attachDisplay(id: SandboxId, sink: DisplaySink): () => void {
    if (!this.known.has(id)) throw new UnknownSandboxError(id);
    this.sinks.set(id, sink);
    return () => {
      this.detached.push(id);
      this.sinks.delete(id);
    };
  }
}

/** Records `on`/`once` listeners by event name and fires them. */
export class Listeners {
  readonly handlers = new Map<string, ((...args: never[]) => unknown)[]>();
  on(event: string, listener: (...args: never[]) => unknown): this {
    const list = this.handlers.get(event) ?? [];
    list.push(listener);
    this.handlers.set(event, list);
    return this;
  }
  once(event: string, listener: (...args: never[]) => unknown): this {
    return this.on(event, listener);
  }
  count(event: string): number {
    return this.handlers.get(event)?.length ?? 0;
  }
  emit(event: string, ...args: unknown[]): void {
    for (const listener of this.handlers.get(event) ?? []) (listener as (...a: unknown[]) => unknown)(...args);
  }
}

export const RENDERER_INDEX = '/opt/belljar/dist/renderer/index.html';
export const RENDERER_URL = 'file:///opt/belljar/dist/renderer/index.html';

export function frame(url = RENDERER_URL, parent: FrameLike | null = null, routingId = 1): FrameLike {
  return { url, parent, processId: 7, routingId };
}

/** A WebContents-like window that records what main sends it. */
export class FakeContents extends Listeners implements TrustedContents {
  readonly sent: { channel: string; args: unknown[] }[] = [];
  destroyed = false;
  constructor(
    readonly id: number,
    readonly mainFrame: FrameLike = frame(),
  ) {
    super();
  }
  send(channel: string, ...args: unknown[]): void {
    this.sent.push({ channel, args });
  }
  isDestroyed(): boolean {
    return this.destroyed;
  }
  destroy(): void {
    this.destroyed = true;
    this.emit('destroyed');
  }
}

export function eventFrom(contents: FakeContents, senderFrame: FrameLike | null = contents.mainFrame): SenderEvent {
  return { sender: contents, senderFrame };
}
