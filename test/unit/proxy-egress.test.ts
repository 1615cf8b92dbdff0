/**
 * The egress proxy over real sockets on 127.0.0.1: CONNECT and plain HTTP to
 * loopback fixture servers through the test allowlist, the same refused
 * without it, names resolving to forbidden addresses, the rebinding defence,
 * bad requests, smuggling attempts, limits, timeouts and deny-all.
 *
 * Nothing here may leave 127.0.0.1: every proxy gets an injected resolver (a
 * table; unknown names fail) and a connector that only ever opens
 * connections to 127.0.0.1 (a "public" address is redirected to a loopback
 * fixture; anything else throws).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import { connect as netConnect, createServer as createNetServer, Socket } from 'node:net';
import type { Server as NetServer } from 'node:net';
import { Duplex } from 'node:stream';
import { EgressProxy, directConnector } from '../../vmm/proxy/egress-proxy.js';
import type {
  EgressProxyOptions,
  ResolvedAddress,
  Resolver,
  UpstreamConnector,
  UpstreamTarget,
} from '../../vmm/proxy/egress-proxy.js';
import type { ProxyDecision } from '../../vmm/proxy/decision-log.js';

const LOOPBACK = '127.0.0.1';
const WAIT_MS = 5_000;

// ---------------------------------------------------------------------------
// Fixtures

interface Recorded {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: readonly string[];
  readonly body: string;
}

interface HttpFixture {
  readonly port: number;
  readonly requests: Recorded[];
}

const closers: Array<() => Promise<void>> = [];
after(async () => {
  for (const close of closers.reverse()) await close();
});

function closeServer(server: NetServer | HttpServer): Promise<void> {
  return new Promise((resolve) => {
    if ('closeAllConnections' in server) server.closeAllConnections();
    server.close(() => resolve());
  });
}

function listen(server: NetServer | HttpServer): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') reject(new Error('no address'));
      else resolve(address.port);
    });
  });
}

/** Records every request; answers JSON, with extra hop-by-hop and duplicate headers on /cookies. */
async function httpFixture(): Promise<HttpFixture> {
  const requests: Recorded[] = [];
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      requests.push({ method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders, body });
      const reply = JSON.stringify({ method: req.method, url: req.url, body });
      if (req.url === '/cookies') {
        res.writeHead(200, [
          ['Content-Type', 'application/json'],
          ['Set-Cookie', 'a=1'],
          ['Set-Cookie', 'b=2'],
          ['Connection', 'X-Hop'],
          ['X-Hop', 'secret'],
          ['Keep-Alive', 'timeout=5'],
        ]);
      } else {
        res.writeHead(200, { 'Content-Type': 'application/json' });
      }
      res.end(reply);
    });
  });
  const port = await listen(server);
  closers.push(() => closeServer(server));
  return { port, requests };
}

/** A TCP echo server (what a tunnel reaches). */
async function echoFixture(): Promise<number> {
  const server = createNetServer((socket) => {
    socket.on('error', () => undefined);
    socket.pipe(socket);
  });
  const port = await listen(server);
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  closers.push(async () => {
    for (const s of sockets) s.destroy();
    await closeServer(server);
  });
  return port;
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createNetServer();
  const port = await listen(server);
  await closeServer(server);
  return port;
}

/** Name → addresses; unknown names fail with ENOTFOUND. Counts calls. */
function fakeResolver(table: Readonly<Record<string, readonly string[]>>): { resolve: Resolver; calls: string[] } {
  const calls: string[] = [];
  const resolve: Resolver = (name) => {
    calls.push(name);
    const addresses = table[name];
    if (addresses === undefined) {
      return Promise.reject(Object.assign(new Error(`no such name ${name}`), { code: 'ENOTFOUND' }));
    }
    return Promise.resolve(
      addresses.map((address): ResolvedAddress => ({ address, family: address.includes(':') ? 6 : 4 })),
    );
  };
  return { resolve, calls };
}

/**
 * Connects only to 127.0.0.1; `redirect` maps "public" addresses to a
 * loopback port (so the path through the proxy is real, the traffic local).
 */
function loopbackConnector(redirect: Readonly<Record<string, number>> = {}): {
  connect: UpstreamConnector;
  targets: UpstreamTarget[];
} {
  const targets: UpstreamTarget[] = [];
  const connect: UpstreamConnector = (target) => {
    targets.push(target);
    const port = redirect[`${target.address}:${target.port}`] ?? redirect[target.address];
    if (port !== undefined) return netConnect(port, LOOPBACK);
    if (target.address !== LOOPBACK) throw new Error(`test connector: refusing to leave loopback (${target.address})`);
    return directConnector(target);
  };
  return { connect, targets };
}

interface TestProxy {
  readonly proxy: EgressProxy;
  readonly port: number;
  readonly decisions: ProxyDecision[];
  readonly resolverCalls: string[];
  readonly connectTargets: UpstreamTarget[];
}

async function startProxy(
  options: EgressProxyOptions & {
    readonly dns?: Readonly<Record<string, readonly string[]>>;
    readonly redirect?: Readonly<Record<string, number>>;
  } = {},
): Promise<TestProxy> {
  const decisions: ProxyDecision[] = [];
  const { resolve, calls } = fakeResolver(options.dns ?? {});
  const { connect, targets } = loopbackConnector(options.redirect);
  const proxy = new EgressProxy({
    resolve,
    connect,
    hostAddresses: () => [],
    onDecision: (d) => decisions.push(d),
    log: { burst: 10_000 },
    ...options,
  });
  const address = await proxy.listen();
  closers.push(() => proxy.close());
  return { proxy, port: address.port, decisions, resolverCalls: calls, connectTargets: targets };
}

// ---------------------------------------------------------------------------
// Clients

/** A raw client: send bytes, wait for text or for the close. */
class RawClient {
  text = '';
  closed = false;
  readonly #socket: Duplex;
  readonly #waiters = new Set<() => void>();

  constructor(socket: Duplex) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.text += chunk.toString('latin1');
      this.#wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = netConnect(port, LOOPBACK);
      socket.once('connect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  send(data: string | Buffer): this {
    this.#socket.write(data);
    return this;
  }

  end(): void {
    this.#socket.end();
  }

  destroy(): void {
    this.#socket.destroy();
  }

  async waitFor(predicate: (text: string) => boolean, what: string): Promise<string> {
    const deadline = Date.now() + WAIT_MS;
    while (!predicate(this.text)) {
      if (this.closed) assert.fail(`closed before ${what}; got ${JSON.stringify(this.text)}`);
      const left = deadline - Date.now();
      if (left <= 0) assert.fail(`timed out waiting for ${what}; got ${JSON.stringify(this.text)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.add(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.text;
  }

  waitForClose(): Promise<string> {
    return this.#waitClosed();
  }

  async #waitClosed(): Promise<string> {
    const deadline = Date.now() + WAIT_MS;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) assert.fail(`connection not closed; got ${JSON.stringify(this.text)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.add(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.text;
  }

  #wake(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const w of waiters) w();
  }
}

/** Sends `data`, returns everything until the proxy closes the connection. */
async function exchange(port: number, data: string | Buffer): Promise<string> {
  const client = await RawClient.connect(port);
  client.send(data);
  try {
    return await client.waitForClose();
  } finally {
    client.destroy();
  }
}

function statusOf(response: string): number {
  const m = /^HTTP\/1\.[01] (\d{3}) /.exec(response);
  return m === null ? 0 : Number(m[1]);
}

function statuses(response: string): number[] {
  return [...response.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

/** A request through the proxy with node:http (absolute-form path). */
function viaProxy(
  proxyPort: number,
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; rawHeaders: string[]; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: LOOPBACK,
      port: proxyPort,
      method: options.method ?? 'GET',
      path: url,
      // node:http would send the proxy's address as Host; a browser sends the target's.
      headers: { Host: new URL(url).host, ...options.headers },
      agent: false,
      setHost: false,
    });
    req.on('response', (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks).toString() });
        req.destroy();
      });
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

function header(raw: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]?.toLowerCase() === name) out.push(raw[i + 1] ?? '');
  return out;
}

function connectRequest(target: string): string {
  return `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`;
}

const ESTABLISHED = 'HTTP/1.1 200 Connection established\r\n\r\n';

// ---------------------------------------------------------------------------
// Through the test allowlist

test('CONNECT to an allowlisted loopback server opens a working tunnel', async () => {
  const echo = await echoFixture();
  const p = await startProxy({ mode: 'public-web', allowForTests: [`${LOOPBACK}:${echo}`] });
  const client = await RawClient.connect(p.port);
  client.send(`${connectRequest(`${LOOPBACK}:${echo}`)}early`);
  await client.waitFor((t) => t === `${ESTABLISHED}early`, 'the 200 and the early bytes echoed');
  client.send('ping');
  await client.waitFor((t) => t.endsWith('earlyping'), 'ping echoed');
  client.destroy();
  const allowed = p.decisions.find((d) => d.outcome === 'allowed');
  assert.equal(allowed?.request, 'connect');
  assert.equal(allowed?.address, LOOPBACK);
  assert.equal(allowed?.rule, 'allowForTests');
});

test('plain HTTP reaches an allowlisted fixture with the Host kept and hop-by-hop/proxy headers removed', async () => {
  const fx = await httpFixture();
  const p = await startProxy({ mode: 'public-web', allowForTests: [`${LOOPBACK}:${fx.port}`] });
  const origin = `${LOOPBACK}:${fx.port}`;
  const res = await viaProxy(p.port, `http://${origin}/hello?x=1`, {
    headers: {
      Host: origin,
      'Proxy-Authorization': 'Basic Zm9vOmJhcg==',
      'Proxy-Connection': 'keep-alive',
      Connection: 'keep-alive, X-Secret',
      'X-Secret': '1',
      'Keep-Alive': '300',
      TE: 'trailers',
      Upgrade: 'h2c',
      'User-Agent': 'belljar-test',
    },
  });
  assert.equal(res.status, 200);
  assert.deepEqual(JSON.parse(res.body), { method: 'GET', url: '/hello?x=1', body: '' });
  const seen = fx.requests[0];
  assert.ok(seen);
  assert.equal(seen.url, '/hello?x=1');
  assert.deepEqual(header(seen.rawHeaders, 'host'), [origin]);
  assert.deepEqual(header(seen.rawHeaders, 'user-agent'), ['belljar-test']);
  assert.deepEqual(header(seen.rawHeaders, 'connection'), ['close']);
  for (const gone of ['proxy-authorization', 'proxy-connection', 'x-secret', 'keep-alive', 'te', 'upgrade']) {
    assert.deepEqual(header(seen.rawHeaders, gone), [], gone);
  }
});

test('plain HTTP responses keep duplicate headers and lose hop-by-hop ones', async () => {
  const fx = await httpFixture();
  const p = await startProxy({ mode: 'public-web', allowForTests: [`${LOOPBACK}:${fx.port}`] });
  const res = await viaProxy(p.port, `http://${LOOPBACK}:${fx.port}/cookies`);
  assert.equal(res.status, 200);
  assert.deepEqual(header(res.rawHeaders, 'set-cookie'), ['a=1', 'b=2']);
  assert.deepEqual(header(res.rawHeaders, 'x-hop'), []);
  assert.deepEqual(header(res.rawHeaders, 'keep-alive'), []);
});

test('request bodies: Content-Length, chunked, and none', async () => {
  const fx = await httpFixture();
  const p = await startProxy({ mode: 'public-web', allowForTests: [`${LOOPBACK}:${fx.port}`] });
  const origin = `${LOOPBACK}:${fx.port}`;
  const sized = await viaProxy(p.port, `http://${origin}/sized`, { method: 'POST', body: 'hello' });
  assert.equal(sized.status, 200);
  const chunked = await exchange(
    p.port,
    `POST http://${origin}/chunked HTTP/1.1\r\nHost: ${origin}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n` +
      '5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
  );
  assert.equal(statusOf(chunked), 200);
  const empty = await exchange(
    p.port,
    `POST http://${origin}/empty HTTP/1.1\r\nHost: ${origin}\r\nConnection: close\r\n\r\n`,
  );
  assert.equal(statusOf(empty), 200);
  const [a, b, c] = fx.requests;
  assert.equal(a?.body, 'hello');
  assert.deepEqual(header(a?.rawHeaders ?? [], 'content-length'), ['5']);
  assert.equal(b?.body, 'hello world');
  assert.deepEqual(header(b?.rawHeaders ?? [], 'transfer-encoding'), ['chunked']);
  assert.equal(c?.body, '');
  assert.deepEqual(header(c?.rawHeaders ?? [], 'content-length'), ['0']);
});

test('a keep-alive guest connection carries several requests, answered in order', async () => {
  const fx = await httpFixture();
  const p = await startProxy({ mode: 'public-web', allowForTests: [`${LOOPBACK}:${fx.port}`] });
  const origin = `${LOOPBACK}:${fx.port}`;
  const response = await exchange(
    p.port,
    `GET http://${origin}/one HTTP/1.1\r\nHost: ${origin}\r\n\r\n` +
      `GET http://${origin}/two HTTP/1.1\r\nHost: ${origin}\r\n\r\n` +
      `GET http://${origin}/three HTTP/1.1\r\nHost: ${origin}\r\nConnection: close\r\n\r\n`,
  );
  assert.deepEqual(statuses(response), [200, 200, 200]);
  assert.deepEqual(
    fx.requests.map((r) => r.url),
    ['/one', '/two', '/three'],
  );
  assert.ok(response.indexOf('"/one"') < response.indexOf('"/two"'));
  assert.ok(response.indexOf('"/two"') < response.indexOf('"/three"'));
});

test('a generic Duplex (not a socket) works as a guest connection', async () => {
  const echo = await echoFixture();
  const p = await startProxy({ mode: 'public-web', allowForTests: [`${LOOPBACK}:${echo}`] });
  const [guest, host] = duplexPair();
  p.proxy.handleConnection(host);
  const client = new RawClient(guest);
  client.send(connectRequest(`${LOOPBACK}:${echo}`));
  await client.waitFor((t) => t === ESTABLISHED, 'the 200');
  client.send('over a duplex');
  await client.waitFor((t) => t.endsWith('over a duplex'), 'echo');
  client.destroy();

  const [guest2, host2] = duplexPair();
  p.proxy.handleConnection(host2);
  const bad = new RawClient(guest2);
  bad.send('GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx');
  await bad.waitFor((t) => statusOf(t) === 400, 'a 400');
  bad.destroy();
});

/** Two Duplex ends wired to each other (node 20 has no stream.duplexPair). */
function duplexPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const make = (other: () => Duplex | undefined): Duplex =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        other()?.push(chunk);
        callback();
      },
      final(callback) {
        other()?.push(null);
        callback();
      },
      destroy(err, callback) {
        const o = other();
        if (o !== undefined && !o.destroyed) o.destroy();
        callback(err);
      },
    });
  const a = make(() => ends[1]);
  const b = make(() => ends[0]);
  ends.push(a, b);
  return [a, b];
}

// ---------------------------------------------------------------------------
// The same without the allowlist, and the allowlist's bounds

test('without the allowlist, loopback fixtures are refused with 403 (CONNECT and plain HTTP)', async () => {
  const fx = await httpFixture();
  const echo = await echoFixture();
  const p = await startProxy({ mode: 'public-web', allowedPorts: [80, 443, fx.port, echo] });
  const tunnel = await exchange(p.port, connectRequest(`${LOOPBACK}:${echo}`));
  assert.equal(statusOf(tunnel), 403);
  assert.match(tunnel, /loopback/);
  const origin = `${LOOPBACK}:${fx.port}`;
  const plain = await viaProxy(p.port, `http://${origin}/`);
  assert.equal(plain.status, 403);
  assert.match(plain.body, /forbidden loopback address/);
  const v6 = await exchange(p.port, connectRequest(`[::1]:${echo}`));
  assert.equal(statusOf(v6), 403);
  const mapped = await exchange(p.port, connectRequest(`[::ffff:127.0.0.1]:${echo}`));
  assert.equal(statusOf(mapped), 403);
  assert.equal(fx.requests.length, 0);
  assert.equal(p.connectTargets.length, 0);
  assert.ok(p.decisions.every((d) => d.outcome === 'refused' && d.status === 403));
});

test('the allowlist is exact ip:port, per proxy, and fixed at construction', async () => {
  const echo = await echoFixture();
  const other = await echoFixture();
  const p = await startProxy({ mode: 'public-web', allowForTests: [`${LOOPBACK}:${echo}`] });
  assert.equal(statusOf(await exchange(p.port, connectRequest(`${LOOPBACK}:${other}`))), 403);
  assert.equal(statusOf(await exchange(p.port, connectRequest(`127.0.0.2:${echo}`))), 403);
  // A guest cannot name the allowlist into being: headers mean nothing to it.
  const sneaky = await exchange(
    p.port,
    `CONNECT ${LOOPBACK}:${other} HTTP/1.1\r\nHost: x\r\nX-Allow-For-Tests: ${LOOPBACK}:${other}\r\n\r\n`,
  );
  assert.equal(statusOf(sneaky), 403);
  const q = await startProxy({ mode: 'public-web' });
  assert.equal(statusOf(await exchange(q.port, connectRequest(`${LOOPBACK}:${echo}`))), 403);
  assert.throws(() => new EgressProxy({ allowForTests: ['localhost:80'] }), /ip:port/);
  assert.throws(() => new EgressProxy({ allowForTests: ['127.0.0.1'] }), /ip:port/);
  assert.throws(() => new EgressProxy({ allowForTests: ['127.1:80'] }), /ip:port/);
});

test('an allowlisted address reached by name is allowed only if every answer is allowed', async () => {
  const echo = await echoFixture();
  const p = await startProxy({
    mode: 'public-web',
    allowForTests: [`${LOOPBACK}:${echo}`],
    dns: { 'fixture.example.com': [LOOPBACK], 'half.example.com': [LOOPBACK, '10.0.0.1'] },
  });
  const ok = await RawClient.connect(p.port);
  ok.send(connectRequest(`fixture.example.com:${echo}`));
  await ok.waitFor((t) => t === ESTABLISHED, 'the 200');
  ok.destroy();
  assert.equal(statusOf(await exchange(p.port, connectRequest(`half.example.com:${echo}`))), 403);
});

// ---------------------------------------------------------------------------
// Names that resolve to forbidden addresses; the rebinding defence

test('names resolving to forbidden addresses (or mixed answers) are refused and never connected', async () => {
  const table: Record<string, readonly string[]> = {
    'loop.example.com': ['127.0.0.1'],
    'private.example.com': ['10.1.2.3'],
    'private172.example.com': ['172.20.0.5'],
    'home.example.com': ['192.168.1.1'],
    'cgnat.example.com': ['100.64.1.1'],
    'meta.example.com': ['169.254.169.254'],
    'alibaba.example.com': ['100.100.100.200'],
    'zero.example.com': ['0.0.0.0'],
    'multicast.example.com': ['224.0.0.251'],
    'v6loop.example.com': ['::1'],
    'mapped.example.com': ['::ffff:127.0.0.1'],
    'mappedhex.example.com': ['::ffff:a9fe:a9fe'],
    'nat64.example.com': ['64:ff9b::a00:1'],
    '6to4.example.com': ['2002:c0a8:101::1'],
    'ula.example.com': ['fd00::1'],
    'linklocal6.example.com': ['fe80::1'],
    'aws6.example.com': ['fd00:ec2::254'],
    'mixed.example.com': ['93.184.216.34', '192.168.0.1'],
    'mixed-last.example.com': ['93.184.216.34', '2606:4700::1', '127.0.0.1'],
    'mixed6.example.com': ['2606:4700::1', 'fe80::1'],
  };
  const p = await startProxy({ mode: 'public-web', dns: table });
  for (const name of Object.keys(table)) {
    const tunnel = await exchange(p.port, connectRequest(`${name}:443`));
    assert.equal(statusOf(tunnel), 403, name);
    assert.match(tunnel, new RegExp(`${name.replace(/\./g, '\\.')} resolves to a forbidden`), name);
    const plain = await exchange(p.port, `GET http://${name}/ HTTP/1.1\r\nHost: ${name}\r\n\r\n`);
    assert.equal(statusOf(plain), 403, name);
  }
  assert.equal(p.connectTargets.length, 0);
  // The guest learns the class; the host's log has the address and rule.
  const meta = p.decisions.find((d) => d.target === 'meta.example.com:443');
  assert.equal(meta?.address, '169.254.169.254');
  assert.match(meta?.rule ?? '', /^169\.254\.169\.254\/32 cloud metadata/);
  const tunnel = await exchange(p.port, connectRequest('meta.example.com:443'));
  assert.doesNotMatch(tunnel, /169\.254/);
});

test('a public name is resolved once and connected to by the checked IP (no rebinding window)', async () => {
  const echo = await echoFixture();
  const fx = await httpFixture();
  let calls = 0;
  // First answer public, every later one loopback: a rebinding attacker's DNS.
  const rebinding: Resolver = () =>
    Promise.resolve(calls++ === 0 ? [{ address: '93.184.216.34', family: 4 }] : [{ address: LOOPBACK, family: 4 }]);
  const p = await startProxy({
    mode: 'public-web',
    resolve: rebinding,
    redirect: { '93.184.216.34:443': echo, '93.184.216.34:80': fx.port },
  });
  const client = await RawClient.connect(p.port);
  client.send(connectRequest('public.example.com:443'));
  await client.waitFor((t) => t === ESTABLISHED, 'the 200');
  client.send('hi');
  await client.waitFor((t) => t.endsWith('hi'), 'echo');
  client.destroy();
  assert.equal(calls, 1);
  assert.deepEqual(p.connectTargets, [{ address: '93.184.216.34', family: 4, port: 443 }]);

  calls = 0;
  const res = await viaProxy(p.port, 'http://public.example.com/page');
  assert.equal(res.status, 200);
  assert.equal(calls, 1);
  assert.deepEqual(p.connectTargets[1], { address: '93.184.216.34', family: 4, port: 80 });
  assert.equal(fx.requests[0]?.url, '/page');
  assert.deepEqual(header(fx.requests[0]?.rawHeaders ?? [], 'host'), ['public.example.com']);
});

test('when the first checked address fails, the next one is tried', async () => {
  const echo = await echoFixture();
  const dead = await closedPort();
  const p = await startProxy({
    mode: 'public-web',
    dns: { 'two.example.com': ['93.184.216.34', '93.184.216.35'] },
    redirect: { '93.184.216.34': dead, '93.184.216.35': echo },
  });
  const client = await RawClient.connect(p.port);
  client.send(connectRequest('two.example.com:443'));
  await client.waitFor((t) => t === ESTABLISHED, 'the 200');
  client.destroy();
  assert.deepEqual(
    p.connectTargets.map((t) => t.address),
    ['93.184.216.34', '93.184.216.35'],
  );
});

test('local-network names and numeric host forms are refused before any lookup', async () => {
  const p = await startProxy({ mode: 'public-web', dns: { localhost: [LOOPBACK] } });
  for (const name of ['localhost', 'intranet', 'metadata.google.internal', 'printer.local', 'nas.home.arpa']) {
    const tunnel = await exchange(p.port, connectRequest(`${name}:443`));
    assert.equal(statusOf(tunnel), 403, name);
  }
  for (const host of ['0177.0.0.1', '2130706433', '0x7f.1', '0x7f000001', '127.1', '127.0.0.1.']) {
    assert.equal(statusOf(await exchange(p.port, connectRequest(`${host}:443`))), 400, host);
    const plain = await exchange(p.port, `GET http://${host}/ HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    assert.equal(statusOf(plain), 400, host);
  }
  assert.deepEqual(p.resolverCalls, []);
  assert.equal(p.connectTargets.length, 0);
});

test("the host's own addresses are refused", async () => {
  const p = await startProxy({
    mode: 'public-web',
    dns: { 'me.example.com': ['93.184.216.34'] },
    hostAddresses: () => ['93.184.216.34', 'fe80::1', 'garbage'],
  });
  const tunnel = await exchange(p.port, connectRequest('me.example.com:443'));
  assert.equal(statusOf(tunnel), 403);
  assert.match(tunnel, /host-own/);
  assert.equal(statusOf(await exchange(p.port, connectRequest('93.184.216.34:443'))), 403);
  assert.equal(p.connectTargets.length, 0);
});

// ---------------------------------------------------------------------------
// Ports, DNS and upstream failures

test('ports other than the allowed ones are refused before any lookup', async () => {
  const echo = await echoFixture();
  const p = await startProxy({ mode: 'public-web', dns: { 'public.example.com': ['93.184.216.34'] } });
  for (const port of [22, 25, 8080, 3128]) {
    const tunnel = await exchange(p.port, connectRequest(`public.example.com:${port}`));
    assert.equal(statusOf(tunnel), 403, String(port));
    assert.match(tunnel, new RegExp(`port ${port} is not allowed`));
  }
  assert.equal(statusOf(await exchange(p.port, connectRequest('93.184.216.34:22'))), 403);
  assert.deepEqual(p.resolverCalls, []);

  const q = await startProxy({
    mode: 'public-web',
    allowedPorts: [8443],
    dns: { 'public.example.com': ['93.184.216.34'] },
    redirect: { '93.184.216.34:8443': echo },
  });
  assert.equal(statusOf(await exchange(q.port, connectRequest('public.example.com:443'))), 403);
  const client = await RawClient.connect(q.port);
  client.send(connectRequest('public.example.com:8443'));
  await client.waitFor((t) => t === ESTABLISHED, 'the 200');
  client.destroy();
});

test('DNS failure → 502, DNS timeout → 504', async () => {
  const hanging: Resolver = () => new Promise(() => undefined);
  const p = await startProxy({ mode: 'public-web', dns: {} });
  const missing = await exchange(p.port, connectRequest('nowhere.example.com:443'));
  assert.equal(statusOf(missing), 502);
  assert.match(missing, /ENOTFOUND/);
  const q = await startProxy({ mode: 'public-web', resolve: hanging, limits: { dnsTimeoutMs: 50 } });
  const slow = await exchange(q.port, connectRequest('slow.example.com:443'));
  assert.equal(statusOf(slow), 504);
  const empty = await startProxy({ mode: 'public-web', dns: { 'empty.example.com': [] } });
  assert.equal(statusOf(await exchange(empty.port, connectRequest('empty.example.com:443'))), 502);
  const junk = await startProxy({ mode: 'public-web', dns: { 'junk.example.com': ['0x7f.1'] } });
  assert.equal(statusOf(await exchange(junk.port, connectRequest('junk.example.com:443'))), 502);
});

test('DNS lookups are bounded in number, and the timeout covers the wait', async () => {
  let active = 0;
  let peak = 0;
  const slow: Resolver = () => {
    active++;
    peak = Math.max(peak, active);
    return new Promise((resolve) =>
      setTimeout(() => {
        active--;
        resolve([{ address: '10.0.0.1', family: 4 }]);
      }, 30),
    );
  };
  const p = await startProxy({ mode: 'public-web', resolve: slow, limits: { maxConcurrentLookups: 2 } });
  const results = await Promise.all(
    Array.from({ length: 6 }, (_, i) => exchange(p.port, connectRequest(`n${i}.example.com:443`))),
  );
  assert.deepEqual(results.map(statusOf), [403, 403, 403, 403, 403, 403]);
  assert.equal(peak, 2);
});

test('upstream refused → 502; upstream connect timeout → 504', async () => {
  const dead = await closedPort();
  const p = await startProxy({ mode: 'public-web', allowForTests: [`${LOOPBACK}:${dead}`] });
  const refused = await exchange(p.port, connectRequest(`${LOOPBACK}:${dead}`));
  assert.equal(statusOf(refused), 502);
  assert.match(refused, /ECONNREFUSED/);
  const plain = await exchange(p.port, `GET http://${LOOPBACK}:${dead}/ HTTP/1.1\r\nHost: ${LOOPBACK}:${dead}\r\n\r\n`);
  assert.equal(statusOf(plain), 502);

  const never = new Set<Socket>();
  const q = await startProxy({
    mode: 'public-web',
    dns: { 'slow.example.com': ['93.184.216.34'] },
    limits: { connectTimeoutMs: 50 },
    connect: () => {
      const s = new Socket(); // never connects
      never.add(s);
      return s;
    },
  });
  const slow = await exchange(q.port, connectRequest('slow.example.com:443'));
  assert.equal(statusOf(slow), 504);
  assert.ok([...never].every((s) => s.destroyed));
});

// ---------------------------------------------------------------------------
// Bad requests and smuggling

test('bad requests get 400 (or 431/505) and never reach DNS or upstream', async () => {
  const p = await startProxy({ mode: 'public-web', dns: { 'example.com': ['93.184.216.34'] } });
  const cases: ReadonlyArray<readonly [string, number]> = [
    ['GET / HTTP/1.1\r\nHost: example.com\r\n\r\n', 400],
    ['GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n', 400],
    ['GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n', 400],
    ['GET http://user:pw@example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n', 400],
    ['GET http://example.com/ HTTP/2.0\r\nHost: example.com\r\n\r\n', 505],
    ['CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n', 400],
    ['CONNECT example.com:99999 HTTP/1.1\r\n\r\n', 400],
    ['CONNECT [fe80::1%eth0]:443 HTTP/1.1\r\n\r\n', 400],
    ['CONNECT user@example.com:443 HTTP/1.1\r\n\r\n', 400],
    ['CONNECT /path HTTP/1.1\r\n\r\n', 400],
    ['garbage\r\n\r\n', 400],
    ['GET http://exa mple.com/ HTTP/1.1\r\n\r\n', 400],
    ['GET http://example.com/ HTTP/1.1\nHost: example.com\n\n', 400],
    ['GET http://example.com/ HTTP/1.1\r\nHost : example.com\r\n\r\n', 400],
    ['GET http://example.com/ HTTP/1.1\r\nX-Bad\u0001: 1\r\n\r\n', 400],
    ['\u0000\u0001\u0002\r\n\r\n', 400],
  ];
  for (const [request, status] of cases) {
    const response = await exchange(p.port, request);
    assert.equal(statusOf(response), status, JSON.stringify(request));
  }
  assert.deepEqual(p.resolverCalls, []);
  assert.equal(p.connectTargets.length, 0);
  assert.ok(p.decisions.every((d) => d.outcome === 'bad-request'));
});

test('smuggling attempts: ambiguous framing and mismatched Host are refused', async () => {
  const fx = await httpFixture();
  const p = await startProxy({ mode: 'public-web', allowForTests: [`${LOOPBACK}:${fx.port}`] });
  const origin = `${LOOPBACK}:${fx.port}`;
  const start = `POST http://${origin}/ HTTP/1.1\r\nHost: ${origin}\r\n`;
  const cases: ReadonlyArray<readonly [string, string]> = [
    ['CL + TE', `${start}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
    ['TE + CL', `${start}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`],
    ['duplicate CL', `${start}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`],
    ['differing CL', `${start}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`],
    ['CL list', `${start}Content-Length: 5, 5\r\n\r\nhello`],
    ['CL not a number', `${start}Content-Length: +5\r\n\r\nhello`],
    ['TE gzip', `${start}Transfer-Encoding: gzip\r\n\r\nhello`],
    ['TE twice', `${start}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
    ['TE list', `${start}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`],
    ['TE obfuscated', `${start}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`],
    ['obs-fold', `${start}X-Folded: one\r\n two\r\nContent-Length: 0\r\n\r\n`],
    ['obs-fold TE', `${start}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n`],
    ['space before colon', `${start}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n`],
    ['bad chunk size', `${start}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`],
    ['Host mismatch', `GET http://${origin}/ HTTP/1.1\r\nHost: internal.example.com\r\n\r\n`],
    ['duplicate Host', `GET http://${origin}/ HTTP/1.1\r\nHost: ${origin}\r\nHost: ${origin}\r\n\r\n`],
  ];
  for (const [name, request] of cases) {
    const response = await exchange(p.port, request);
    assert.equal(statusOf(response), 400, name);
    assert.deepEqual(statuses(response), [400], name);
  }
  assert.equal(fx.requests.length, 0);
});

test('smuggling attempts: a request hidden in a body stays body; a pipelined one is checked on its own', async () => {
  const fx = await httpFixture();
  const p = await startProxy({ mode: 'public-web', allowForTests: [`${LOOPBACK}:${fx.port}`] });
  const origin = `${LOOPBACK}:${fx.port}`;
  const hidden = 'GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n';
  const inBody = await exchange(
    p.port,
    `POST http://${origin}/a HTTP/1.1\r\nHost: ${origin}\r\nContent-Length: ${hidden.length}\r\nConnection: close\r\n\r\n${hidden}`,
  );
  assert.deepEqual(statuses(inBody), [200]);
  assert.equal(fx.requests[0]?.body, hidden);

  // Framing headers cannot be dropped by naming them in Connection.
  const named = await exchange(
    p.port,
    `POST http://${origin}/b HTTP/1.1\r\nHost: ${origin}\r\nConnection: close, Content-Length, Transfer-Encoding\r\nContent-Length: 5\r\n\r\nhello`,
  );
  assert.deepEqual(statuses(named), [200]);
  assert.equal(fx.requests[1]?.body, 'hello');
  assert.deepEqual(header(fx.requests[1]?.rawHeaders ?? [], 'content-length'), ['5']);

  // After the chunked body ends, the rest is a second request: policy-checked like any other.
  const pipelined = await exchange(
    p.port,
    `POST http://${origin}/c HTTP/1.1\r\nHost: ${origin}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n` +
      'GET http://10.0.0.1/admin HTTP/1.1\r\nHost: 10.0.0.1\r\nConnection: close\r\n\r\n',
  );
  assert.deepEqual(statuses(pipelined), [200, 403]);
  assert.equal(fx.requests.length, 3);
  assert.equal(fx.requests[2]?.url, '/c');
});

test('a body that turns malformed while it is being forwarded fails that request, then the connection closes', async () => {
  const fx = await httpFixture();
  const p = await startProxy({ mode: 'public-web', allowForTests: [`${LOOPBACK}:${fx.port}`] });
  const origin = `${LOOPBACK}:${fx.port}`;
  const client = await RawClient.connect(p.port);
  client.send(
    `POST http://${origin}/slow HTTP/1.1\r\nHost: ${origin}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`,
  );
  await waitUntil(() => p.decisions.some((d) => d.outcome === 'allowed'));
  await new Promise((r) => setTimeout(r, 20));
  client.send('zz\r\nGET http://10.0.0.1/ HTTP/1.1\r\n\r\n');
  const response = await client.waitForClose();
  assert.deepEqual(statuses(response), [400]);
  assert.match(response, /malformed request body \(HPE_/);
  assert.equal(fx.requests.length, 0);
  await waitUntil(() => p.proxy.stats.activeUpstreams === 0);
});

test('the request header size limit → 431', async () => {
  const p = await startProxy({ mode: 'public-web', limits: { maxHeaderBytes: 1024 } });
  const response = await exchange(
    p.port,
    `GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nX-Big: ${'a'.repeat(2000)}\r\n\r\n`,
  );
  assert.equal(statusOf(response), 431);
  const tunnel = await exchange(p.port, `CONNECT example.com:443 HTTP/1.1\r\nX-Big: ${'a'.repeat(2000)}\r\n\r\n`);
  assert.equal(statusOf(tunnel), 431);
  const endless = await RawClient.connect(p.port);
  endless.send(`GET http://example.com/${'a'.repeat(4000)}`);
  await endless.waitForClose();
  assert.equal(statusOf(endless.text), 431);
  assert.deepEqual(p.resolverCalls, []);
});

// ---------------------------------------------------------------------------
// Mode, limits, timeouts

test('deny-all is the default and refuses everything, allowlist included', async () => {
  const echo = await echoFixture();
  const fx = await httpFixture();
  const p = await startProxy({ allowForTests: [`${LOOPBACK}:${echo}`, `${LOOPBACK}:${fx.port}`] });
  assert.equal(p.proxy.mode, 'deny-all');
  const tunnel = await exchange(p.port, connectRequest(`${LOOPBACK}:${echo}`));
  assert.equal(statusOf(tunnel), 403);
  assert.match(tunnel, /network access is off/);
  const plain = await viaProxy(p.port, `http://${LOOPBACK}:${fx.port}/`);
  assert.equal(plain.status, 403);
  assert.equal(statusOf(await exchange(p.port, connectRequest('example.com:443'))), 403);
  assert.deepEqual(p.resolverCalls, []);
  assert.equal(fx.requests.length, 0);
});

test('switching to deny-all closes open tunnels; switching back allows again', async () => {
  const echo = await echoFixture();
  const p = await startProxy({ mode: 'public-web', allowForTests: [`${LOOPBACK}:${echo}`] });
  const client = await RawClient.connect(p.port);
  client.send(connectRequest(`${LOOPBACK}:${echo}`));
  await client.waitFor((t) => t === ESTABLISHED, 'the 200');
  p.proxy.setMode('deny-all');
  await client.waitForClose();
  assert.equal(statusOf(await exchange(p.port, connectRequest(`${LOOPBACK}:${echo}`))), 403);
  p.proxy.setMode('public-web');
  const again = await RawClient.connect(p.port);
  again.send(connectRequest(`${LOOPBACK}:${echo}`));
  await again.waitFor((t) => t === ESTABLISHED, 'the 200');
  again.destroy();
  assert.throws(() => p.proxy.setMode('everything' as 'deny-all'), /unknown mode/);
});

test('the concurrent-connection limit answers 503', async () => {
  const p = await startProxy({ mode: 'public-web', limits: { maxConnections: 2 } });
  const a = await RawClient.connect(p.port);
  const b = await RawClient.connect(p.port);
  await waitUntil(() => p.proxy.stats.activeConnections === 2);
  const third = await exchange(p.port, 'GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n');
  assert.equal(statusOf(third), 503);
  a.destroy();
  await waitUntil(() => p.proxy.stats.activeConnections === 1);
  const fourth = await exchange(p.port, connectRequest('127.0.0.1:443'));
  assert.equal(statusOf(fourth), 403);
  b.destroy();
});

test('a request head that does not complete in time closes the connection', async () => {
  const p = await startProxy({ mode: 'public-web', limits: { headersTimeoutMs: 100 } });
  const client = await RawClient.connect(p.port);
  client.send('GET http://example.com/ HTTP/1.1\r\nHost: exa');
  const started = Date.now();
  await client.waitForClose();
  assert.ok(Date.now() - started < 2_000);
  assert.equal(client.text, '');
});

test('an idle tunnel is closed after the idle timeout', async () => {
  const echo = await echoFixture();
  const p = await startProxy({
    mode: 'public-web',
    allowForTests: [`${LOOPBACK}:${echo}`],
    limits: { idleTimeoutMs: 150 },
  });
  const client = await RawClient.connect(p.port);
  client.send(connectRequest(`${LOOPBACK}:${echo}`));
  await client.waitFor((t) => t === ESTABLISHED, 'the 200');
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 60));
    client.send(`.${i}`);
  }
  await client.waitFor((t) => t.endsWith('.2'), 'traffic keeps it open');
  await client.waitForClose();
  assert.ok(p.decisions.some((d) => d.outcome === 'closed' && /idle/.test(d.reason)));
  await waitUntil(() => p.proxy.stats.activeUpstreams === 0);
});

test('close() ends tunnels and refuses new connections; listen() binds only loopback', async () => {
  const echo = await echoFixture();
  const p = await startProxy({ mode: 'public-web', allowForTests: [`${LOOPBACK}:${echo}`] });
  const client = await RawClient.connect(p.port);
  client.send(connectRequest(`${LOOPBACK}:${echo}`));
  await client.waitFor((t) => t === ESTABLISHED, 'the 200');
  await p.proxy.close();
  await client.waitForClose();
  const [guest, host] = duplexPair();
  p.proxy.handleConnection(host);
  assert.ok(host.destroyed && guest.destroyed);
  const q = new EgressProxy({ resolve: fakeResolver({}).resolve, connect: loopbackConnector().connect });
  await assert.rejects(q.listen(0, '0.0.0.0'), /loopback/);
  assert.throws(() => new EgressProxy({ limits: { maxConnections: 0 } }), RangeError);
  assert.throws(() => new EgressProxy({ allowedPorts: [0] }), RangeError);
});

test('decisions are logged with target, outcome, status and reason', async () => {
  const p = await startProxy({ mode: 'public-web', dns: { 'priv.example.com': ['10.9.8.7'] } });
  await exchange(p.port, connectRequest('priv.example.com:443'));
  await exchange(p.port, 'nonsense\r\n\r\n');
  const [refused, bad] = p.decisions;
  assert.equal(refused?.request, 'connect');
  assert.equal(refused?.target, 'priv.example.com:443');
  assert.equal(refused?.outcome, 'refused');
  assert.equal(refused?.status, 403);
  assert.equal(refused?.address, '10.9.8.7');
  assert.match(refused?.reason ?? '', /private address/);
  assert.equal(bad?.outcome, 'bad-request');
  assert.equal(bad?.status, 400);
  assert.equal(p.proxy.stats.refused, 1);
  assert.equal(p.proxy.stats.badRequests, 1);
  assert.equal(p.proxy.recentDecisions().length, 2);
});

async function waitUntil(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail('condition not reached');
    await new Promise((r) => setTimeout(r, 5));
  }
}
