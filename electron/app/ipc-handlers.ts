/**
 * The main-process end of the preload API. Every channel checks its sender
 * first (our window's main frame on our renderer page), then the argument
 * count, then each argument with the contract's parsers, and only then calls
 * the session service. Invokes answer with an IpcResult envelope carrying a
 * plain-words message; one-way messages (input, resize) that fail are dropped.
 */
import {
  ContractError,
  IPC_CHANNELS,
  parseDisplaySize,
  parseInputEvents,
  parseOpenRequest,
  parseSandboxId,
  type SandboxSummary,
} from '../contract/ipc.js';
import { OpenRefusedError, UnknownSandboxError, type SessionService } from '../sessions/session-service.js';
import { parseAttachKey, type IpcResult } from './ipc-wire.js';
import type { SenderEvent } from './sender.js';

/** ipcMain, as far as this module uses it. */
export interface IpcMainLike<Event extends SenderEvent> {
  handle(channel: string, listener: (event: Event, ...args: unknown[]) => unknown): void;
  on(channel: string, listener: (event: Event, ...args: unknown[]) => void): unknown;
}

export interface IpcDependencies<Event extends SenderEvent> {
  readonly sessions: SessionService;
  isTrustedSender(event: Event): boolean;
  /** Shows the host's file dialog for the sender's window; null when cancelled. */
  pickFile(event: Event): Promise<string | null>;
  /** Sends sandbox `id`'s frames to the sender over a new MessagePort. */
  attachDisplay(event: Event, id: string, key: number): void;
  log(message: string): void;
}

/** Refused before any work: wrong sender or malformed arguments. */
class RefusedMessage extends Error {}

/** The message the renderer may see: ours and the service's plain-words errors, nothing internal. */
function userMessage(error: unknown, channel: string, log: (message: string) => void): string {
  if (
    error instanceof ContractError ||
    error instanceof OpenRefusedError ||
    error instanceof UnknownSandboxError ||
    error instanceof RefusedMessage
  ) {
    return error.message;
  }
  log(`${channel} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  return 'Belljar could not do that (internal error; see the log)';
}

function expectArgs(args: readonly unknown[], count: number, channel: string): void {
  if (args.length !== count) throw new RefusedMessage(`${channel}: expected ${count} arguments`);
}

export function registerIpcHandlers<Event extends SenderEvent>(
  ipc: IpcMainLike<Event>,
  deps: IpcDependencies<Event>,
): void {
  const { sessions, log } = deps;

  /** An invoke: sender check, argument count, then `run` with the raw arguments. */
  const handle = <T>(channel: string, argCount: number, run: (event: Event, args: unknown[]) => T | Promise<T>) => {
    ipc.handle(channel, async (event, ...args): Promise<IpcResult<T>> => {
      if (!deps.isTrustedSender(event)) {
        log(`refused ${channel} from an unknown sender (${event.senderFrame?.url.slice(0, 200) ?? 'no frame'})`);
        return { ok: false, error: 'refused: unknown sender' };
      }
      try {
        expectArgs(args, argCount, channel);
        return { ok: true, value: await run(event, args) };
      } catch (error) {
        return { ok: false, error: userMessage(error, channel, log) };
      }
    });
  };

  /** A one-way message: same checks, nothing to answer, failures logged and dropped. */
  const listen = (channel: string, argCount: number, run: (args: unknown[]) => void) => {
    ipc.on(channel, (event, ...args) => {
      if (!deps.isTrustedSender(event)) {
        log(`dropped ${channel} from an unknown sender`);
        return;
      }
      try {
        expectArgs(args, argCount, channel);
        run(args);
      } catch (error) {
        // Input for a sandbox that just closed is normal; log only the unexpected.
        if (!(error instanceof UnknownSandboxError)) log(`dropped ${channel}: ${userMessage(error, channel, log)}`);
      }
    });
  };

  handle(IPC_CHANNELS.listSandboxes, 0, () => sessions.list());
  handle(IPC_CHANNELS.open, 1, (_event, [request]) => sessions.open(parseOpenRequest(request)));
  handle(IPC_CHANNELS.pickAndOpenFile, 0, async (event): Promise<SandboxSummary | null> => {
    const path = await deps.pickFile(event);
    return path === null ? null : sessions.open(parseOpenRequest({ kind: 'file', path }));
  });
  handle(IPC_CHANNELS.close, 1, (_event, [id]) => sessions.close(parseSandboxId(id)));
  handle(IPC_CHANNELS.attachDisplay, 2, (event, [id, key]) => {
    deps.attachDisplay(event, parseSandboxId(id), parseAttachKey(key));
    return null;
  });
  listen(IPC_CHANNELS.input, 2, ([id, events]) => sessions.input(parseSandboxId(id), parseInputEvents(events)));
  listen(IPC_CHANNELS.resize, 3, ([id, width, height]) => {
    const size = parseDisplaySize(width, height);
    sessions.resize(parseSandboxId(id), size.width, size.height);
  });
}

/** A window the sandbox list is pushed to. */
export interface ListTarget {
  send(channel: string, ...args: unknown[]): void;
}

/** Pushes the whole list to every window on every change. Returns unsubscribe. */
export function broadcastSandboxes(
  sessions: Pick<SessionService, 'onChange'>,
  targets: () => readonly ListTarget[],
): () => void {
  return sessions.onChange((list) => {
    for (const target of targets()) target.send(IPC_CHANNELS.sandboxes, list);
  });
}
