/**
 * Runs the real guest agent (Perl, core modules only) on the host, speaking
 * the protocol over pipes, with a fake Chromium DevTools endpoint and an item
 * disk in a plain file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { classifyItem, itemDiskImage } from '../../guest-images/item.js';
import {
  encodeFrame,
  FrameDecoder,
  ProtocolError,
  type GuestMessage,
  type HostMessage,
} from '../../guest-images/protocol.js';

const AGENT = fileURLToPath(new URL('../../../guest-images/agent/belljar-agent.pl', import.meta.url));
const hasPerl = spawnSync('perl', ['-e', '1']).status === 0;

interface FakeDevtools {
  port: number;
  requests: string[];
  close: () => void;
}

/** A fake DevTools HTTP endpoint: one blank page, /json/new adds a page whose title appears at once. */
async function fakeDevtools(): Promise<FakeDevtools> {
  const pages = [{ id: 'blank', type: 'page', title: 'about:blank', url: 'about:blank' }];
  const requests: string[] = [];
  let created = 0;
  const server = createServer((socket) => {
    let head = '';
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const [method, path] = head.split(' ');
      requests.push(`${method} ${path}`);
      let body: unknown = {};
      if (path === '/json/list') body = pages;
      else if (path?.startsWith('/json/new?') && method === 'PUT') {
        const url = decodeURIComponent(path.slice('/json/new?'.length));
        const page = { id: `p${++created}`, type: 'page', title: 'Fixture “title”', url };
        pages.push(page);
        body = page;
      } else if (path?.startsWith('/json/close/')) {
        const id = path.slice('/json/close/'.length);
        const i = pages.findIndex((p) => p.id === id);
        if (i >= 0) pages.splice(i, 1);
        body = 'Target is closing';
      }
      const json = Buffer.from(JSON.stringify(body));
      socket.end(
        `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${json.length}\r\n\r\n${json.toString('latin1')}`,
        'latin1',
      );
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return { port: (server.address() as AddressInfo).port, requests, close: () => server.close() };
}

interface RunningAgent {
  readonly agent: ChildProcessWithoutNullStreams;
  readonly messages: GuestMessage[];
  readonly errors: ProtocolError[];
  send(message: HostMessage | Record<string, unknown>): void;
  waitFor(pred: (m: GuestMessage) => boolean, what: string): Promise<GuestMessage>;
}

/** Starts the agent with `args`, collecting what it says. */
function startAgent(args: readonly string[]): RunningAgent {
  const agent = spawn('perl', [AGENT, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const decoder = new FrameDecoder();
  const messages: GuestMessage[] = [];
  const errors: ProtocolError[] = [];
  let stderr = '';
  agent.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  agent.stdout.on('data', (chunk: Buffer) => {
    for (const m of decoder.push(chunk)) (m instanceof ProtocolError ? errors : messages).push(m as never);
  });
  return {
    agent,
    messages,
    errors,
    send: (m) => void agent.stdin.write(encodeFrame(m as HostMessage)),
    waitFor: async (pred, what) => {
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        const m = messages.find(pred);
        if (m) return m;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(messages)}; stderr: ${stderr}`);
    },
  };
}

test(
  'the agent says ready, opens an item disk through DevTools and refuses bad requests',
  { skip: !hasPerl && 'perl missing' },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'belljar-agent-'));
    const devtools = await fakeDevtools();
    const devDir = join(dir, 'dev');
    mkdirSync(devDir);
    const content = Buffer.from('<!doctype html><title>x</title><p>héllo</p>');
    const item = classifyItem('--my page ü.html', content);
    assert.ok(item.ok);
    writeFileSync(join(devDir, 'vdb'), itemDiskImage(item, content));
    writeFileSync(join(dir, 'timings'), 'init 1.25\nrootfs 2.50\n');
    const { agent, send, waitFor, errors } = startAgent([
      '--devtools',
      `127.0.0.1:${devtools.port}`,
      '--items',
      join(dir, 'items'),
      '--timings',
      join(dir, 'timings'),
      '--dev-dir',
      devDir,
    ]);
    try {
      const ready = await waitFor((m) => m.type === 'ready', 'ready');
      assert.equal(ready.type === 'ready' && ready.timings['init'], 1250);
      assert.equal(ready.type === 'ready' && ready.timings['rootfs'], 2500);

      send({ v: 1, type: 'open', id: 1, item: { disk: 'vdb' } });
      const loaded = await waitFor((m) => m.type === 'status' && m.id === 1 && m.state === 'loaded', 'loaded');
      assert.equal(loaded.type === 'status' && loaded.title, 'Fixture “title”');
      const copied = join(dir, 'items', '1', 'my page ü.html');
      assert.deepEqual(readFileSync(copied), content);
      assert.equal(statSync(copied).mode & 0o777, 0o444);
      const opened = devtools.requests.find((r) => r.startsWith('PUT /json/new?'));
      assert.ok(opened);
      assert.equal(decodeURIComponent(opened.slice('PUT /json/new?'.length)), `file://${encodeURI(copied)}`);
      assert.ok(devtools.requests.includes('GET /json/close/blank'), 'the previous page is closed');

      send({ v: 1, type: 'open', id: 2, item: { disk: '../etc/passwd' } });
      const bad = await waitFor((m) => m.type === 'status' && m.id === 2, 'refusal');
      assert.equal(bad.type === 'status' && bad.state, 'error');
      send({ v: 1, type: 'open', id: 3, url: 'file:///etc/passwd' });
      const badUrl = await waitFor((m) => m.type === 'status' && m.id === 3, 'url refusal');
      assert.equal(badUrl.type === 'status' && badUrl.error, 'only http and https URLs open');
      send({ v: 1, type: 'launch', id: 4, cmd: 'sh' });
      await waitFor((m) => m.type === 'error' && m.id === 4, 'unknown type error');
      send({ v: 9, type: 'status', id: 5 });
      await waitFor((m) => m.type === 'error' && m.id === 5, 'version error');
      agent.stdin.write(Buffer.from([0, 0, 0, 2, 0x7b, 0x7b]));
      await waitFor((m) => m.type === 'error' && /malformed/.test(m.message), 'malformed JSON error');
      send({ v: 1, type: 'status', id: 6 });
      const status = await waitFor((m) => m.type === 'status' && m.id === 6, 'status');
      assert.equal(status.type === 'status' && status.state, 'error');

      // JSON escapes the agent must decode: surrogate pairs and escaped backslashes.
      send({ v: 1, type: 'open', id: 7, url: 'https://example.org/\\u0041/😀' });
      const url = await waitFor((m) => m.type === 'status' && m.id === 7 && m.state !== 'loading', 'url open');
      assert.equal(url.type === 'status' && url.url, 'https://example.org/\\u0041/😀');
      assert.deepEqual(errors, []);

      const exited = new Promise((r) => agent.once('exit', r));
      agent.stdin.end();
      await exited;
    } finally {
      agent.kill();
      devtools.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

const idOf = (m: GuestMessage): number | undefined => ('id' in m ? m.id : undefined);

/** A fake sway IPC server (i3-ipc framing): records RUN_COMMAND payloads and answers with `reply`. */
async function fakeSway(path: string, reply: () => unknown): Promise<{ commands: string[]; close: () => void }> {
  const commands: string[] = [];
  const server = createServer((socket) => {
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 14) return;
      const length = buf.readUInt32LE(6);
      if (buf.length < 14 + length) return;
      assert.equal(buf.subarray(0, 6).toString(), 'i3-ipc');
      assert.equal(buf.readUInt32LE(10), 0, 'RUN_COMMAND');
      commands.push(buf.subarray(14, 14 + length).toString());
      const body = Buffer.from(JSON.stringify(reply()));
      const head = Buffer.alloc(14);
      head.write('i3-ipc');
      head.writeUInt32LE(body.length, 6);
      head.writeUInt32LE(0, 10);
      socket.end(Buffer.concat([head, body]));
    });
  });
  server.listen(path);
  await new Promise((r) => server.once('listening', r));
  return { commands, close: () => server.close() };
}

test(
  "the agent sets sway's mode for a display request and refuses bad sizes",
  { skip: !hasPerl && 'perl missing' },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'belljar-agent-'));
    let answer: unknown = [{ success: true }];
    const sway = await fakeSway(join(dir, 'sway-ipc.1000.42.sock'), () => answer);
    const { agent, send, waitFor, errors } = startAgent(['--sway-socket', join(dir, 'sway-ipc.*.sock')]);
    try {
      await waitFor((m) => m.type === 'ready', 'ready');
      send({ v: 1, type: 'display', id: 1, width: 800, height: 600 });
      const shown = await waitFor((m) => idOf(m) === 1, 'display answer');
      assert.deepEqual(shown, { type: 'display', id: 1, width: 800, height: 600 });
      assert.deepEqual(sway.commands, ['output * mode --custom 800x600']);

      // Nothing but whole numbers in the VMM's range reaches sway's command line.
      const bad = [
        { id: 2, width: 10, height: 600 },
        { id: 3, width: 800.5, height: 600 },
        { id: 4, width: '800; exec sh', height: 600 },
        { id: 5, width: 800 },
        { id: 6, width: 4000, height: 600 },
      ];
      for (const m of bad) send({ v: 1, type: 'display', ...m });
      for (const { id } of bad) {
        const e = await waitFor((m) => idOf(m) === id, `refusal ${id}`);
        assert.ok(e.type === 'error' && /whole numbers from 64 to 3840/.test(e.message), JSON.stringify(e));
      }
      assert.equal(sway.commands.length, 1);

      // sway's refusal and sway's absence come back as errors, not as a shown mode.
      answer = [{ success: false, error: 'Invalid mode' }];
      send({ v: 1, type: 'display', id: 7, width: 1024, height: 768 });
      const refused = await waitFor((m) => idOf(m) === 7, 'sway refusal');
      assert.ok(refused.type === 'error' && /sway refused: Invalid mode/.test(refused.message));
      answer = { not: 'a list' };
      send({ v: 1, type: 'display', id: 8, width: 1024, height: 768 });
      const malformed = await waitFor((m) => idOf(m) === 8, 'malformed reply');
      assert.ok(malformed.type === 'error' && /malformed reply/.test(malformed.message));
      sway.close();
      rmSync(join(dir, 'sway-ipc.1000.42.sock'), { force: true });
      send({ v: 1, type: 'display', id: 9, width: 1024, height: 768 });
      const gone = await waitFor((m) => idOf(m) === 9, 'no sway');
      assert.ok(gone.type === 'error' && /sway is not running/.test(gone.message), JSON.stringify(gone));
      assert.deepEqual(errors, []);
    } finally {
      agent.kill();
      sway.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
