/**
 * Who may talk to the main process: only the main frame of one of our own
 * windows, while it shows our renderer page (file://…/dist/renderer/index.html).
 * A subframe, another WebContents, or our window after it somehow navigated
 * elsewhere is refused.
 */
import { pathToFileURL } from 'node:url';

export interface FrameLike {
  readonly url: string;
  readonly parent: FrameLike | null;
  readonly processId: number;
  readonly routingId: number;
}

export interface SenderContents {
  readonly id: number;
  readonly mainFrame: FrameLike;
}

/** What an IPC event tells about its sender (IpcMainEvent / IpcMainInvokeEvent). */
export interface SenderEvent {
  readonly sender: SenderContents;
  readonly senderFrame: FrameLike | null;
}

/** A WebContents we push to (sandbox list) and watch for its end. */
export interface TrustedContents extends SenderContents {
  send(channel: string, ...args: unknown[]): void;
  isDestroyed(): boolean;
  once(event: 'destroyed', listener: () => void): unknown;
}

/** True when `url` is our renderer page (any #fragment; no query, no other file). */
export function isRendererUrl(url: string, rendererIndexPath: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  const expected = pathToFileURL(rendererIndexPath);
  return (
    parsed.protocol === 'file:' && parsed.host === '' && parsed.search === '' && parsed.pathname === expected.pathname
  );
}

export class TrustedWindows {
  readonly #contents = new Map<number, TrustedContents>();

  constructor(private readonly rendererIndexPath: string) {}

  /** Trusts the main frame of `contents` until it is destroyed. */
  add(contents: TrustedContents): void {
    this.#contents.set(contents.id, contents);
    contents.once('destroyed', () => this.#contents.delete(contents.id));
  }

  /** Our live windows' contents (to push the sandbox list to). */
  list(): TrustedContents[] {
    return [...this.#contents.values()].filter((contents) => !contents.isDestroyed());
  }

  isTrustedSender(event: SenderEvent): boolean {
    const frame = event.senderFrame;
    if (frame === null || frame.parent !== null) return false;
    if (!this.#contents.has(event.sender.id)) return false;
    const main = event.sender.mainFrame;
    if (frame.processId !== main.processId || frame.routingId !== main.routingId) return false;
    return isRendererUrl(frame.url, this.rendererIndexPath);
  }
}
