/**
 * BridgeServer over real loopback HTTP and WebSocket (the `ws` client), in
 * front of a fake SessionService that records every call.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { WebSocket, type RawData } from 'ws';
import { BRIDGE_CSP, BridgeServer, type BridgeOptions } from '../../electron/bridge/bridge-server.js';
import { BRIDGE_WS_PATH, unpackBridgeFrame } from '../../electron/contract/bridge-protocol.js';
import { decodeFrame, encodeFrame } from '../../electron/contract/frame-wire.js';
import type { InputEvent, OpenRequest, SandboxId, SandboxSummary } from '../../electron/contract/ipc.js';
import {
  OpenRefusedError,
  UnknownSandboxError,
  type DisplaySink,
  type SessionService,
} from '../../electron/sessions/session-service.js';

const WAIT_MS = 3000;

function summary(id: string, overrides: Partial<SandboxSummary> = {}): SandboxSummary {
  return {
    id,
    title: `${id}.pdf`,
    item: { kind: 'file', name: `${id}.pdf` },
    state: 'running',
    stage: 'shown',
    openedAt: 1000,
    memoryMiB: 512,
    network: 'none',
    ...overrides,
  };
}

class FakeService implements SessionService {
  readonly calls: string[] = [];
  readonly opened: OpenRequest[] = [];
  readonly inputs: { id: SandboxId; events: readonly InputEvent[] }[] = [];
  readonly resizes: { id: SandboxId; width: number; height: number }[] = [];
  readonly closed: SandboxId[] = [];
  readonly sinks = new Map<SandboxId, DisplaySink>();
  readonly detached: SandboxId[] = [];
  readonly listeners = new Set<(list: readonly SandboxSummary[]) => void>();
  readonly known = new Map<SandboxId, SandboxSummary>([['sbx-1', summary('sbx-1')]]);

  list(): readonly SandboxSummary[] {
    this.calls.push('list');
    return [...this.known.values()];
  }
  async open(request: OpenRequest): Promise<SandboxSummary> {
    this.calls.push('open');
    this.opened.push(request);
    if (request.kind === 'url' && request.url.includes('refuse')) throw new OpenRefusedError('That link is refused.');
    const id = `sbx-${this.opened.length + 100}`;
    const s = summary(id, {
      state: 'starting',
      title: request.kind === 'file' ? request.path : request.url,
      network: request.kind === 'url' ? 'web' : 'none',
    });
    this.known.set(id, s);
    return s;
  }
  async close(id: SandboxId): Promise<void> {
    this.calls.push('close');
    if (!this.known.delete(id)) throw new UnknownSandboxError(id);
    this.closed.push(id);
  }
  async closeAll(): Promise<void> {
    this.calls.push('closeAll');
  }
  input(id: SandboxId, events: readonly InputEvent[]): void {
    this.calls.push('input');
    if (!this.known.has(id)) throw new UnknownSandboxError(id);
    this.inputs.push({ id, events });
  }
  resize(id: SandboxId, width: number, height: number): void {
    this.calls.push('resize');
    if (!this.known.has(id)) throw new UnknownSandboxError(id);
    this.resizes.push({ id, width, height });
  }
  onChange(listener: (list: readonly SandboxSummary[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  emit(): void {
    const list = [...this.known.values()];
    for (const listener of this.listeners) listener(list);
  }
  attachDisplay(id: SandboxId, sink: DisplaySink): () => void {
    this.calls.push('attachDisplay');
    if (!this.known.has(id)) throw new UnknownSandboxError(id);
    this.sinks.set(id, sink);
    return () => {
      this.detached.push(id);
      if (this.sinks.get(id) === sink) this.sinks.delete(id);
    };
  }
}

let rendererDir = '';
let outsideFile = '';
const bridges: BridgeServer[] = [];
const sockets: WebSocket[] = [];

before(() => {
  const root = mkdtempSync(join(tmpdir(), 'belljar-bridge-test-'));
  rendererDir = join(root, 'renderer');
  mkdirSync(join(rendererDir, 'assets'), { recursive: true });
  writeFileSync(join(rendererDir, 'index.html'), '<!doctype html><title>Belljar</title>');
  writeFileSync(join(rendererDir, 'assets', 'app.js'), 'console.log("app");');
  writeFileSync(join(rendererDir, 'assets', 'app.css'), 'body{}');
  writeFileSync(join(rendererDir, 'assets', 'data.bin'), Buffer.from([1, 2, 3]));
  outsideFile = join(root, 'secret.txt');
  writeFileSync(outsideFile, 'SECRET');
});

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.terminate();
  await Promise.all(bridges.splice(0).map((b) => b.close()));
});

after(() => {
  rmSync(join(rendererDir, '..'), { recursive: true, force: true });
});

async function start(
  options: Partial<BridgeOptions> = {},
): Promise<{ bridge: BridgeServer; service: FakeService; port: number; origin: string }> {
  const service = new FakeService();
  const bridge = new BridgeServer(service, { rendererDir, ...options });
  bridges.push(bridge);
  const address = await bridge.listen();
  assert.equal(address.address, '127.0.0.1');
  return { bridge, service, port: address.port, origin: bridge.url.replace(/\/$/, '') };
}

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** An HTTP request with the path sent exactly as given (no client-side normalisation). */
function get(port: number, path: string, method = 'GET'): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, timeout: WAIT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** A WebSocket client that queues every message, text and binary. */
class Client {
  readonly texts: unknown[] = [];
  readonly binaries: Buffer[] = [];
  private waiters: (() => void)[] = [];
  closeCode: number | undefined;
  readonly closed: Promise<number>;
  private nextId = 1;

  constructor(readonly socket: WebSocket) {
    sockets.push(socket);
    socket.on('message', (data: RawData, isBinary: boolean) => {
      if (isBinary) this.binaries.push(Buffer.from(data as Buffer));
      else this.texts.push(JSON.parse(data.toString()));
      this.wake();
    });
    this.closed = new Promise((resolve) =>
      socket.on('close', (code) => {
        this.closeCode = code;
        this.wake();
        resolve(code);
      }),
    );
  }

  static async connect(port: number, origin: string | undefined): Promise<Client> {
    const socket = new WebSocket(`ws://127.0.0.1:${port}${BRIDGE_WS_PATH}`, origin === undefined ? {} : { origin });
    const client = new Client(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    return client;
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  /** Waits until `predicate` holds, or fails after WAIT_MS. */
  async until(predicate: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + WAIT_MS;
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        // Woken by every message; polled too, for conditions that change without one.
        const timer = setTimeout(resolve, Math.min(left, 10));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  send(message: unknown): void {
    this.socket.send(JSON.stringify(message));
  }

  /** Sends a call and resolves with its answer ({ id, result } or { id, error }). */
  async call(method: string, ...params: unknown[]): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    this.send({ id, method, params });
    let answer: Record<string, unknown> | undefined;
    await this.until(() => {
      answer = this.texts.find((m) => (m as { id?: unknown }).id === id) as Record<string, unknown> | undefined;
      return answer !== undefined;
    }, `the answer to ${method}`);
    return answer!;
  }

  async waitClosed(): Promise<number> {
    await this.until(() => this.closeCode !== undefined, 'the socket to close');
    return this.closeCode!;
  }
}

function tick(ms = 50): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('BridgeServer static files', () => {
  test('serves index.html at / with the CSP, nosniff and no-store headers', async () => {
    const { port, bridge } = await start();
    assert.match(bridge.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const res = await get(port, '/');
    assert.equal(res.status, 200);
    assert.equal(res.body, '<!doctype html><title>Belljar</title>');
    assert.equal(res.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(res.headers['content-security-policy'], BRIDGE_CSP);
    assert.match(BRIDGE_CSP, /default-src 'none'/);
    assert.match(BRIDGE_CSP, /frame-ancestors 'none'/);
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.equal(res.headers['cache-control'], 'no-store');
  });

  test('serves assets with their content types, unknown extensions as octet-stream', async () => {
    const { port } = await start();
    const js = await get(port, '/assets/app.js?v=1');
    assert.equal(js.status, 200);
    assert.equal(js.body, 'console.log("app");');
    assert.equal(js.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.equal(js.headers['content-security-policy'], BRIDGE_CSP);
    const css = await get(port, '/assets/app.css');
    assert.equal(css.headers['content-type'], 'text/css; charset=utf-8');
    const bin = await get(port, '/assets/data.bin');
    assert.equal(bin.headers['content-type'], 'application/octet-stream');
    assert.equal(bin.headers['x-content-type-options'], 'nosniff');
  });

  test('HEAD answers headers without a body', async () => {
    const { port } = await start();
    const res = await get(port, '/index.html', 'HEAD');
    assert.equal(res.status, 200);
    assert.equal(res.body, '');
    assert.equal(res.headers['content-security-policy'], BRIDGE_CSP);
  });

  test('missing files and directories are 404', async () => {
    const { port } = await start();
    assert.equal((await get(port, '/nope.js')).status, 404);
    assert.equal((await get(port, '/assets')).status, 404);
    assert.equal((await get(port, '/assets/')).status, 404);
  });

  test('path traversal, encoded traversal and NUL are 404 and never leak the file outside', async () => {
    const { port } = await start();
    for (const path of [
      '/../secret.txt',
      '/assets/../../secret.txt',
      '/%2e%2e/secret.txt',
      '/%2E%2E/secret.txt',
      '/assets/%2e%2e/%2e%2e/secret.txt',
      '/..%2fsecret.txt',
      '/..%5csecret.txt',
      '/%2e%2e%2fsecret.txt',
      '/index.html%00',
      '/index.html%00.js',
      '/%00',
    ]) {
      const res = await get(port, path);
      assert.equal(res.status, 404, path);
      assert.doesNotMatch(res.body, /SECRET/, path);
    }
  });

  test('a malformed percent-encoding is 400 and the server keeps serving', async () => {
    const { port } = await start();
    const res = await get(port, '/%zz');
    assert.equal(res.status, 400);
    assert.equal((await get(port, '/')).status, 200);
  });

  test('methods other than GET and HEAD are 405', async () => {
    const { port } = await start();
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
      const res = await get(port, '/index.html', method);
      assert.equal(res.status, 405, method);
      assert.equal(res.body, '');
    }
  });
});

describe('BridgeServer WebSocket', () => {
  test('refuses a wrong Origin, a missing Origin and a wrong path', async () => {
    const { port, service } = await start();
    for (const origin of [`http://localhost:${port}`, 'http://evil.example', `https://127.0.0.1:${port}`, 'null']) {
      await assert.rejects(Client.connect(port, origin), /Unexpected server response: 401/, origin);
    }
    await assert.rejects(Client.connect(port, undefined), /Unexpected server response: 401/);
    const wrongPath = new WebSocket(`ws://127.0.0.1:${port}/other`, { origin: `http://127.0.0.1:${port}` });
    sockets.push(wrongPath);
    await assert.rejects(
      new Promise((resolve, reject) => {
        wrongPath.once('open', resolve);
        wrongPath.once('error', reject);
      }),
    );
    assert.equal(service.listeners.size, 0, 'no refused client subscribed');
  });

  test('accepts the bridge origin; the first message is the sandboxes list', async () => {
    const { port, origin } = await start();
    const client = await Client.connect(port, origin);
    await client.until(() => client.texts.length >= 1, 'the first message');
    assert.deepEqual(client.texts[0], { event: 'sandboxes', list: [summary('sbx-1')] });
  });

  test('onChange events are forwarded as sandboxes events', async () => {
    const { port, origin, service } = await start();
    const client = await Client.connect(port, origin);
    await client.until(() => client.texts.length >= 1, 'the first message');
    service.known.set('sbx-2', summary('sbx-2', { state: 'failed', error: 'boom' }));
    service.emit();
    await client.until(() => client.texts.length >= 2, 'the change event');
    assert.deepEqual(client.texts[1], {
      event: 'sandboxes',
      list: [summary('sbx-1'), summary('sbx-2', { state: 'failed', error: 'boom' })],
    });
  });

  test('listSandboxes answers with the list', async () => {
    const { port, origin } = await start();
    const client = await Client.connect(port, origin);
    assert.deepEqual(await client.call('listSandboxes'), { id: 1, result: [summary('sbx-1')] });
  });

  test('a good open request reaches the service and answers with its summary', async () => {
    const { port, origin, service } = await start();
    const client = await Client.connect(port, origin);
    const answer = await client.call('open', { kind: 'url', url: 'https://example.com/' });
    assert.deepEqual(service.opened, [{ kind: 'url', url: 'https://example.com/' }]);
    assert.deepEqual(answer, {
      id: 1,
      result: summary('sbx-101', { state: 'starting', title: 'https://example.com/', network: 'web' }),
    });
  });

  test('bad open requests answer with an error and never reach the service', async () => {
    const { port, origin, service } = await start();
    const client = await Client.connect(port, origin);
    const bad = [
      [],
      [null],
      [{ kind: 'file', path: '/tmp/a\0b' }],
      [{ kind: 'file', path: '/tmp/a', extra: 1 }],
      [{ kind: 'exe', path: '/bin/sh' }],
      [{ kind: 'url', url: '' }],
    ];
    for (const params of bad) {
      const answer = await client.call('open', ...params);
      assert.equal(typeof answer['error'], 'string', JSON.stringify(params));
      assert.match(answer['error'] as string, /^open: /);
      assert.ok(!('result' in answer));
    }
    assert.deepEqual(service.opened, []);
    assert.ok(!service.calls.includes('open'));
    // The socket is still usable after refused calls.
    assert.ok('result' in (await client.call('listSandboxes')));
  });

  test('a refusal from the service comes back as its plain-words message', async () => {
    const { port, origin } = await start();
    const client = await Client.connect(port, origin);
    assert.deepEqual(await client.call('open', { kind: 'url', url: 'https://refuse.example/' }), {
      id: 1,
      error: 'That link is refused.',
    });
  });

  test('close, input and resize are validated, then passed on', async () => {
    const { port, origin, service } = await start();
    const client = await Client.connect(port, origin);
    assert.match((await client.call('close', '../sbx-1'))['error'] as string, /not a sandbox id/);
    assert.match(
      (await client.call('input', 'sbx-1', [{ type: 'key', code: 'KeyA', down: 'yes' }]))['error'] as string,
      /down must be true or false/,
    );
    assert.match((await client.call('input', 'sbx-1', 'not-an-array'))['error'] as string, /events must be an array/);
    assert.match((await client.call('resize', 'sbx-1', 800.5, 600))['error'] as string, /width must be an integer/);
    assert.deepEqual(service.inputs, []);
    assert.deepEqual(service.resizes, []);
    assert.deepEqual(service.closed, []);

    const events = [{ type: 'wheel', dx: 1.6, dy: 0 }];
    assert.deepEqual(await client.call('input', 'sbx-1', events), { id: 5, result: null });
    assert.deepEqual(service.inputs, [{ id: 'sbx-1', events: [{ type: 'wheel', dx: 2, dy: 0 }] }]);
    assert.deepEqual(await client.call('resize', 'sbx-1', 10, 99999), { id: 6, result: null });
    assert.deepEqual(service.resizes, [{ id: 'sbx-1', width: 64, height: 3840 }]);
    assert.deepEqual(await client.call('close', 'sbx-1'), { id: 7, result: null });
    assert.deepEqual(service.closed, ['sbx-1']);
    // The service's own error for an unknown id is passed back.
    assert.deepEqual(await client.call('close', 'sbx-1'), { id: 8, error: 'no sandbox "sbx-1"' });
  });

  test('an unknown method closes the socket', async () => {
    const { port, origin, service } = await start();
    const client = await Client.connect(port, origin);
    client.send({ id: 1, method: 'closeAll', params: [] });
    assert.equal(await client.waitClosed(), 1008);
    assert.ok(!service.calls.includes('closeAll'));
  });

  test('a call without a numeric id closes the socket', async () => {
    const { port, origin, service } = await start();
    for (const message of [
      { method: 'open', params: [{ kind: 'url', url: 'https://example.com/' }] },
      { id: '1', method: 'listSandboxes', params: [] },
    ]) {
      const client = await Client.connect(port, origin);
      client.send(message);
      assert.equal(await client.waitClosed(), 1008, JSON.stringify(message));
    }
    assert.deepEqual(service.opened, []);
  });

  test('non-JSON and non-object messages close the socket', async () => {
    const { port, origin } = await start();
    const a = await Client.connect(port, origin);
    a.socket.send('{not json');
    assert.equal(await a.waitClosed(), 1007);
    const b = await Client.connect(port, origin);
    b.socket.send('42');
    assert.equal(await b.waitClosed(), 1007);
  });

  test('binary client messages close the socket', async () => {
    const { port, origin, service } = await start();
    const client = await Client.connect(port, origin);
    client.socket.send(Buffer.from(JSON.stringify({ id: 1, method: 'listSandboxes', params: [] })));
    assert.equal(await client.waitClosed(), 1003);
    assert.ok(!client.texts.some((m) => (m as { id?: unknown }).id === 1));
    // Closing unsubscribed the client.
    await tick();
    assert.equal(service.listeners.size, 0);
  });

  test('attachDisplay streams frames as binary messages; frameAck delivers them in order', async () => {
    const { port, origin, service } = await start();
    const client = await Client.connect(port, origin);
    assert.deepEqual(await client.call('attachDisplay', 'sbx-1'), { id: 1, result: null });
    const sink = service.sinks.get('sbx-1');
    assert.ok(sink, 'the service got a sink');

    const frames = [1, 2, 3].map((seq) =>
      encodeFrame({
        seq,
        enabled: true,
        full: seq === 1,
        width: 4,
        height: 4,
        rects: [{ x: 0, y: 0, width: 2, height: 1, pixels: new Uint8Array(8).fill(seq) }],
      }),
    );
    const delivered: number[] = [];
    frames.forEach((frame, i) => sink.send(frame, () => delivered.push(i + 1)));
    await client.until(() => client.binaries.length === 3, 'three frames');
    client.binaries.forEach((message, i) => {
      const buffer = message.buffer.slice(message.byteOffset, message.byteOffset + message.byteLength);
      const { sandboxId, frame } = unpackBridgeFrame(buffer as ArrayBuffer);
      assert.equal(sandboxId, 'sbx-1');
      assert.deepEqual(Buffer.from(frame), Buffer.from(frames[i]!));
      const decoded = decodeFrame(frame);
      assert.equal(decoded.seq, i + 1);
      assert.deepEqual([...decoded.rects[0]!.pixels], new Array(8).fill(i + 1));
    });
    assert.deepEqual(delivered, [], 'nothing is delivered before the client acknowledges');

    // Acks for another or a bad id are ignored.
    client.send({ method: 'frameAck', params: ['sbx-9'] });
    client.send({ method: 'frameAck', params: ['BAD ID'] });
    client.send({ method: 'frameAck', params: ['sbx-1'] });
    await client.until(() => delivered.length === 1, 'the first delivery');
    await tick();
    assert.deepEqual(delivered, [1]);
    client.send({ method: 'frameAck', params: ['sbx-1'] });
    client.send({ method: 'frameAck', params: ['sbx-1'] });
    client.send({ method: 'frameAck', params: ['sbx-1'] }); // one more than owed: nothing happens
    await client.until(() => delivered.length === 3, 'all deliveries');
    await tick();
    assert.deepEqual(delivered, [1, 2, 3]);
    assert.equal(client.closeCode, undefined, 'frameAck never closes the socket');
  });

  test('attachDisplay of an unknown or invalid id answers with an error', async () => {
    const { port, origin, service } = await start();
    const client = await Client.connect(port, origin);
    assert.deepEqual(await client.call('attachDisplay', 'sbx-404'), { id: 1, error: 'no sandbox "sbx-404"' });
    assert.match((await client.call('attachDisplay', 42))['error'] as string, /not a sandbox id/);
    assert.equal(service.sinks.size, 0);
  });

  test('detachDisplay and re-attaching detach the previous display', async () => {
    const { port, origin, service } = await start();
    const client = await Client.connect(port, origin);
    await client.call('attachDisplay', 'sbx-1');
    const first = service.sinks.get('sbx-1');
    await client.call('attachDisplay', 'sbx-1');
    assert.deepEqual(service.detached, ['sbx-1']);
    assert.notEqual(service.sinks.get('sbx-1'), first);
    assert.deepEqual(await client.call('detachDisplay', 'sbx-1'), { id: 3, result: null });
    assert.deepEqual(service.detached, ['sbx-1', 'sbx-1']);
    assert.equal(service.sinks.size, 0);
  });

  test('closing the socket detaches its displays and unsubscribes from changes', async () => {
    const { port, origin, service } = await start();
    const client = await Client.connect(port, origin);
    await client.call('attachDisplay', 'sbx-1');
    assert.equal(service.listeners.size, 1);
    const sink = service.sinks.get('sbx-1');
    assert.ok(sink);
    client.socket.close();
    await client.waitClosed();
    await client.until(() => service.listeners.size === 0, 'the unsubscribe');
    assert.deepEqual(service.detached, ['sbx-1']);
    // A frame racing the close is delivered at once (never stalls the VMM).
    let delivered = 0;
    sink.send(new ArrayBuffer(36), () => delivered++);
    assert.equal(delivered, 1);
  });

  test('pickAndOpenFile without a pickFile option answers with an error', async () => {
    const { port, origin, service } = await start();
    const client = await Client.connect(port, origin);
    assert.deepEqual(await client.call('pickAndOpenFile'), {
      id: 1,
      error: 'There is no file dialog in the browser bridge.',
    });
    assert.deepEqual(service.opened, []);
  });

  test('pickAndOpenFile with a pickFile option opens the picked path; null when cancelled', async () => {
    let pick: string | null = '/home/ann/picked.pdf';
    const { port, origin, service } = await start({ pickFile: () => pick });
    const client = await Client.connect(port, origin);
    const answer = await client.call('pickAndOpenFile');
    assert.deepEqual(service.opened, [{ kind: 'file', path: '/home/ann/picked.pdf' }]);
    assert.deepEqual(answer, {
      id: 1,
      result: summary('sbx-101', { state: 'starting', title: '/home/ann/picked.pdf' }),
    });
    pick = null;
    assert.deepEqual(await client.call('pickAndOpenFile'), { id: 2, result: null });
    assert.equal(service.opened.length, 1);
  });

  test('close() of the bridge ends connected clients', async () => {
    const { port, origin } = await start();
    const client = await Client.connect(port, origin);
    const bridge = bridges.pop()!;
    await bridge.close();
    const code = await client.waitClosed();
    assert.ok(code === 1006 || code === 1001, `close code ${code}`);
  });
});
