/**
 * What the Electron main process and the test bridge both host: the sandbox
 * sessions, independent of Electron. Requests reaching it are already
 * validated by the contract's parsers; it owns one VMM child process per
 * sandbox (see session-manager.ts).
 */
import type { InputEvent, OpenRequest, SandboxId, SandboxSummary } from '../contract/ipc.js';

/** Where a display's frames go (a MessagePort in Electron, a WebSocket in the bridge). */
export interface DisplaySink {
  /**
   * One frame in the contract's frame-wire format. Call `delivered` once the
   * consumer has drawn it (or dropped it): until then at most a few more
   * frames are sent, so a slow consumer gets fewer, larger frames.
   */
  send(frame: ArrayBuffer, delivered: () => void): void;
}

export interface SessionService {
  list(): readonly SandboxSummary[];
  /** Rejects with an `OpenRefusedError` (plain-words message) when the item cannot be opened. */
  open(request: OpenRequest): Promise<SandboxSummary>;
  /** Destroys the sandbox: VMM process ended, temp files removed. Resolves when done. */
  close(id: SandboxId): Promise<void>;
  /** Closes every sandbox (app quit). */
  closeAll(): Promise<void>;
  input(id: SandboxId, events: readonly InputEvent[]): void;
  resize(id: SandboxId, width: number, height: number): void;
  /** Called with the whole list on every change. Returns unsubscribe. */
  onChange(listener: (list: readonly SandboxSummary[]) => void): () => void;
  /** Starts sending frames (a full one first). Returns detach. Throws for an unknown id. */
  attachDisplay(id: SandboxId, sink: DisplaySink): () => void;
}

/** A request the service refuses, with a message meant for the user. */
export class OpenRefusedError extends Error {
  override name = 'OpenRefusedError';
}

export class UnknownSandboxError extends Error {
  override name = 'UnknownSandboxError';
  constructor(id: string) {
    super(`no sandbox ${JSON.stringify(id.slice(0, 64))}`);
  }
}
