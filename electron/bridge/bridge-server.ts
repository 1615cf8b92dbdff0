/**
 * The test bridge: hosts a SessionService (the same one Electron's main
 * process hosts) behind the contract's API over one WebSocket, and serves the
 * built renderer, so a plain Chromium runs the real UI against real
 * sandboxes without the Electron binary. Every call is validated with the
 * contract's parsers, as in main; only pages this server served (same Origin)
 * may connect. Binds to loopback unless told otherwise (the KVM lab forwards
 * the port from the host's loopback).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import {
  BRIDGE_MAX_TEXT_BYTES,
  BRIDGE_METHODS,
  BRIDGE_WS_PATH,
  packBridgeFrame,
  type BridgeMethod,
  type BridgeServerMessage,
} from '../contract/bridge-protocol.js';
import {
  ContractError,
  parseDisplaySize,
  parseInputEvents,
  parseOpenRequest,
  parseSandboxId,
} from '../contract/ipc.js';
import type { SessionService } from '../sessions/session-service.js';

/** The same policy the renderer's page carries in its meta tag, as a header too. */
export const BRIDGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

export interface BridgeOptions {
  /** The built renderer (dist/renderer). */
  readonly rendererDir: string;
  readonly host?: string;
  readonly port?: number;
  /** What "open a file" picks (there is no file dialog in a browser); absent: the call says so. */
  readonly pickFile?: () => string | null;
}

export class BridgeServer {
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  private origin = '';

  constructor(
    private readonly service: SessionService,
    private readonly options: BridgeOptions,
  ) {
    this.http = createServer((req, res) => void this.serveStatic(req, res));
    this.wss = new WebSocketServer({
      server: this.http,
      path: BRIDGE_WS_PATH,
      maxPayload: BRIDGE_MAX_TEXT_BYTES,
      verifyClient: ({ origin }: { origin: string }) => origin === this.origin,
    });
    this.wss.on('connection', (socket) => this.onClient(socket));
  }

  async listen(): Promise<AddressInfo> {
    const host = this.options.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.options.port ?? 0, host, () => resolve());
    });
    const address = this.http.address() as AddressInfo;
    this.origin = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${address.port}`;
    return address;
  }

  /** The origin pages must come from (what a browser opens). */
  get url(): string {
    return `${this.origin}/`;
  }

  async close(): Promise<void> {
    for (const client of this.wss.clients) client.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  private async serveStatic(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    let pathname: string;
    try {
      pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      // A malformed percent-encoding (`/%zz`): answer, never reject (the caller does not await).
      res.writeHead(400).end();
      return;
    }
    const relative = normalize(pathname === '/' ? '/index.html' : pathname).replace(/^[/\\]+/, '');
    const path = join(this.options.rendererDir, relative);
    if (relative.startsWith('..') || !path.startsWith(this.options.rendererDir + sep) || path.includes('\0')) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(path);
      res.writeHead(200, {
        'content-type': CONTENT_TYPES[extname(path)] ?? 'application/octet-stream',
        'content-security-policy': BRIDGE_CSP,
        'x-content-type-options': 'nosniff',
        'cache-control': 'no-store',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch {
      res.writeHead(404).end();
    }
  }

  private onClient(socket: WebSocket): void {
    const send = (message: BridgeServerMessage) => {
      if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(message));
    };
    /** Per attached display: the acknowledgements owed to the session, oldest first. */
    const displays = new Map<string, { detach: () => void; owed: (() => void)[] }>();
    const unsubscribe = this.service.onChange((list) => send({ event: 'sandboxes', list }));
    send({ event: 'sandboxes', list: this.service.list() });

    const call = async (method: BridgeMethod, params: readonly unknown[]): Promise<unknown> => {
      switch (method) {
        case 'listSandboxes':
          return this.service.list();
        case 'open':
          return this.service.open(parseOpenRequest(params[0]));
        case 'pickAndOpenFile': {
          if (!this.options.pickFile) throw new ContractError('There is no file dialog in the browser bridge.');
          const path = this.options.pickFile();
          return path === null ? null : this.service.open({ kind: 'file', path });
        }
        case 'close':
          return this.service.close(parseSandboxId(params[0]));
        case 'input':
          return this.service.input(parseSandboxId(params[0]), parseInputEvents(params[1]));
        case 'resize': {
          const size = parseDisplaySize(params[1], params[2]);
          return this.service.resize(parseSandboxId(params[0]), size.width, size.height);
        }
        case 'attachDisplay': {
          const id = parseSandboxId(params[0]);
          displays.get(id)?.detach();
          const display = { owed: [] as (() => void)[], detach: () => {} };
          display.detach = this.service.attachDisplay(id, {
            send: (frame, delivered) => {
              if (socket.readyState !== socket.OPEN) return delivered();
              display.owed.push(delivered);
              socket.send(packBridgeFrame(id, frame));
            },
          });
          displays.set(id, display);
          return null;
        }
        case 'detachDisplay': {
          const id = parseSandboxId(params[0]);
          displays.get(id)?.detach();
          displays.delete(id);
          return null;
        }
      }
    };

    socket.on('message', (data: RawData, isBinary: boolean) => {
      if (isBinary) return socket.close(1003, 'binary messages are not accepted');
      let message: unknown;
      try {
        message = JSON.parse(data.toString());
      } catch {
        return socket.close(1007, 'not JSON');
      }
      if (typeof message !== 'object' || message === null) return socket.close(1007, 'not an object');
      const { id, method, params } = message as { id?: unknown; method?: unknown; params?: unknown };
      const args = Array.isArray(params) ? params : [];
      if (method === 'frameAck') {
        const display = displays.get(parseSandboxIdOr(args[0]));
        display?.owed.shift()?.();
        return;
      }
      if (typeof id !== 'number' || !BRIDGE_METHODS.includes(method as BridgeMethod)) {
        return socket.close(1008, 'unknown call');
      }
      call(method as BridgeMethod, args).then(
        (result) => send({ id, result: result ?? null }),
        (error: unknown) => send({ id, error: error instanceof Error ? error.message : String(error) }),
      );
    });
    socket.on('close', () => {
      unsubscribe();
      for (const display of displays.values()) display.detach();
      displays.clear();
    });
  }
}

function parseSandboxIdOr(value: unknown): string {
  try {
    return parseSandboxId(value);
  } catch {
    return '';
  }
}
