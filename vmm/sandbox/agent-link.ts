/**
 * The host end of the guest agent's control stream over our vsock: connect
 * (retrying while the guest boots), wait for `ready`, then send requests and
 * hand on the agent's validated messages. Everything the agent says is
 * untrusted: frames are size-limited and validated by guest-images/protocol.ts.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { AGENT_VSOCK_PORT } from '../../guest-images/config.js';
import {
  encodeFrame,
  FrameDecoder,
  ProtocolError,
  type GuestMessage,
  type HostMessage,
  type ReadyMessage,
} from '../../guest-images/protocol.js';
import type { VirtioVsock } from '../devices/virtio/vsock/device.js';
import type { VsockConnection } from '../devices/virtio/vsock/connection.js';

/** Between connection attempts while nothing listens in the guest yet. */
const CONNECT_RETRY_MS = 1000;
const CONNECT_ATTEMPT_TIMEOUT_MS = 5000;

export class AgentLink {
  private nextId = 1;

  private constructor(
    private readonly connection: VsockConnection,
    readonly ready: ReadyMessage,
  ) {}

  /**
   * Connects and waits for `ready`, giving up after `timeoutMs` or when
   * `signal` aborts. `onMessage` gets every later message; `onBroken` is
   * called once if the stream ends or the agent breaks the protocol.
   */
  static async connect(
    vsock: VirtioVsock,
    options: {
      readonly timeoutMs: number;
      readonly signal: AbortSignal;
      readonly onMessage: (message: GuestMessage) => void;
      readonly onBroken: (reason: string) => void;
    },
  ): Promise<AgentLink> {
    const deadline = Date.now() + options.timeoutMs;
    for (;;) {
      options.signal.throwIfAborted();
      if (Date.now() > deadline) throw new Error(`the guest agent did not answer within ${options.timeoutMs / 1000} s`);
      let connection: VsockConnection;
      try {
        connection = await vsock.connect(AGENT_VSOCK_PORT, { timeoutMs: CONNECT_ATTEMPT_TIMEOUT_MS });
      } catch {
        await sleep(CONNECT_RETRY_MS, undefined, { signal: options.signal });
        continue;
      }
      const ready = await waitForReady(connection, deadline, options);
      if (ready) return new AgentLink(connection, ready);
    }
  }

  open(item: { readonly disk: string } | { readonly url: string }): void {
    const id = this.nextId++;
    const message: HostMessage =
      'url' in item ? { v: 1, type: 'open', id, url: item.url } : { v: 1, type: 'open', id, item: { disk: item.disk } };
    this.connection.write(encodeFrame(message));
  }

  /** Asks the guest's compositor to show a `width` × `height` mode; returns the request's id. */
  display(width: number, height: number): number {
    const id = this.nextId++;
    this.connection.write(encodeFrame({ v: 1, type: 'display', id, width, height }));
    return id;
  }

  close(): void {
    this.connection.destroy();
  }
}

/** Reads until `ready` (then keeps delivering), or resolves null when this connection died first. */
function waitForReady(
  connection: VsockConnection,
  deadline: number,
  options: {
    readonly signal: AbortSignal;
    readonly onMessage: (message: GuestMessage) => void;
    readonly onBroken: (reason: string) => void;
  },
): Promise<ReadyMessage | null> {
  return new Promise((resolve) => {
    const decoder = new FrameDecoder();
    let ready: ReadyMessage | null = null;
    let broken = false;
    const timer = setTimeout(() => finish(null), Math.max(0, deadline - Date.now()));
    const onAbort = () => finish(null);
    options.signal.addEventListener('abort', onAbort, { once: true });
    function finish(value: ReadyMessage | null) {
      clearTimeout(timer);
      options.signal.removeEventListener('abort', onAbort);
      if (value === null) connection.destroy();
      resolve(value);
    }
    function fail(reason: string) {
      if (broken) return;
      broken = true;
      connection.destroy();
      if (ready) options.onBroken(reason);
      else finish(null);
    }
    connection.on('data', (chunk: Buffer) => {
      for (const message of decoder.push(chunk)) {
        if (message instanceof ProtocolError) return fail(`the agent broke the protocol: ${message.message}`);
        if (!ready) {
          if (message.type === 'ready') {
            ready = message;
            finish(message);
          }
          continue;
        }
        options.onMessage(message);
      }
    });
    connection.on('error', () => fail('the agent connection failed'));
    connection.on('close', () => fail('the agent closed its connection'));
  });
}
