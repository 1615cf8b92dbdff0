/**
 * Main's end of the frame path. Each `attachDisplay` gets its own
 * MessageChannelMain: main keeps port1 and posts each frame (one ArrayBuffer
 * in the frame-wire format) on it; port2 goes to the window's preload. The
 * preload posts FRAME_ACK back after the page's listener returned, and each
 * ack completes the oldest unacknowledged frame (`delivered()`), which is
 * what lets the session service hold back frames for a slow window.
 */
import { IPC_CHANNELS, type SandboxId } from '../contract/ipc.js';
import type { SessionService } from '../sessions/session-service.js';
import { FRAME_ACK, type DisplayPortAnnouncement } from './ipc-wire.js';

/** MessagePortMain, as far as this module uses it. */
export interface MainPort {
  postMessage(message: unknown): void;
  on(event: 'message', listener: (event: { data: unknown }) => void): unknown;
  on(event: 'close', listener: () => void): unknown;
  start(): void;
  close(): void;
}

/** The window that receives the port (its WebContents). */
export interface PortTarget<Transfer> {
  readonly id: number;
  postMessage(channel: string, message: DisplayPortAnnouncement, transfer: Transfer[]): void;
  once(event: 'destroyed', listener: () => void): unknown;
}

/** Displays one window may hold open at once; more means a leak in the renderer. */
export const MAX_DISPLAYS_PER_WINDOW = 32;

export class DisplayPorts<Transfer> {
  /** Open attachments per window, each with its teardown. */
  readonly #byWindow = new Map<number, Set<() => void>>();

  constructor(
    private readonly sessions: Pick<SessionService, 'attachDisplay'>,
    private readonly createChannel: () => { port1: MainPort; port2: Transfer },
  ) {}

  /** Open attachments of one window (for tests and diagnostics). */
  count(windowId: number): number {
    return this.#byWindow.get(windowId)?.size ?? 0;
  }

  /** Attaches sandbox `id`'s display to `target`; throws for an unknown sandbox or too many displays. */
  attach(target: PortTarget<Transfer>, id: SandboxId, key: number): void {
    let open = this.#byWindow.get(target.id);
    if (!open) {
      const set = new Set<() => void>();
      this.#byWindow.set(target.id, set);
      // A window that goes away detaches all its displays.
      target.once('destroyed', () => {
        for (const teardown of [...set]) teardown();
        this.#byWindow.delete(target.id);
      });
      open = set;
    }
    if (open.size >= MAX_DISPLAYS_PER_WINDOW) throw new Error('too many displays open in this window');

    const { port1, port2 } = this.createChannel();
    /** `delivered` callbacks of frames sent and not yet acknowledged, oldest first. */
    const unacked: (() => void)[] = [];
    let detach: (() => void) | null = null;
    let closed = false;
    const windowSet = open;
    const teardown = () => {
      if (closed) return;
      closed = true;
      windowSet.delete(teardown);
      detach?.();
      port1.close();
    };

    port1.on('message', ({ data }) => {
      // The only message the renderer's end may send; anything else is ignored.
      if (data === FRAME_ACK) unacked.shift()?.();
    });
    port1.on('close', teardown);
    try {
      detach = this.sessions.attachDisplay(id, {
        send(frame, delivered) {
          if (closed) return;
          unacked.push(delivered);
          port1.postMessage(frame);
        },
      });
    } catch (error) {
      closed = true;
      port1.close();
      throw error;
    }
    windowSet.add(teardown);
    port1.start();
    target.postMessage(IPC_CHANNELS.displayPort, { id, key }, [port2]);
  }
}
