/**
 * The egress proxy: a sandbox's only way to the network. One `EgressProxy`
 * per sandbox; every guest connection to the proxy port (vsock port 3128)
 * becomes a `Duplex` handed to `handleConnection`. It speaks HTTP/1.x proxy
 * requests: CONNECT host:port (tunnels, for https and WebSockets) and
 * absolute-form plain HTTP (`GET http://host/path`).
 *
 * For every request: mode (`deny-all` refuses everything) → strict target
 * parsing (request-target.ts) → port policy → host-name policy → resolve the
 * name once on the host (node:dns lookup, all addresses, with a timeout) →
 * EVERY address through the address policy (address-policy.ts) → connect by
 * IP to an address that passed. The name is never resolved again, so there is
 * no DNS-rebinding window. Plain HTTP is re-serialized by node:http to the
 * checked IP with the guest's Host header; hop-by-hop and proxy headers are
 * dropped, and ambiguous framing is refused. Each decision goes to a bounded
 * log (decision-log.ts). docs/egress-proxy.md describes the policy and limits.
 */
import { lookup } from 'node:dns/promises';
import { STATUS_CODES, createServer as createHttpServer, request as httpRequest } from 'node:http';
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import type { AddressInfo, LookupFunction, Server as NetServer, Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Duplex } from 'node:stream';
import {
  DEFAULT_ALLOWED_PORTS,
  checkAddress,
  checkHostName,
  isValidPort,
  parseIp,
  type IpAddress,
  type IpFamily,
} from './address-policy.js';
import { DecisionLog } from './decision-log.js';
import type { DecisionInput, DecisionLogOptions, DecisionOutcome, ProxyDecision } from './decision-log.js';
import {
  HTTP_DEFAULT_PORT,
  hostHeaderMatches,
  parseAbsoluteHttpUrl,
  parseAuthority,
  parseConnectTarget,
} from './request-target.js';
import type { HttpTarget, RequestTarget } from './request-target.js';

/** `deny-all`: every request gets 403 (the default). `public-web`: the address policy decides. */
export type ProxyMode = 'deny-all' | 'public-web';

export interface ResolvedAddress {
  readonly address: string;
  readonly family: number;
}

/** Name → addresses. The default is node:dns `lookup(name, { all: true })`; tests inject their own. */
export type Resolver = (hostname: string) => Promise<readonly ResolvedAddress[]>;

export interface UpstreamTarget {
  /** A checked IP address (never a name). */
  readonly address: string;
  readonly family: IpFamily;
  readonly port: number;
}

/** Opens the upstream TCP connection; must emit 'connect' (or 'error'). Default: `net.connect` by IP. */
export type UpstreamConnector = (target: UpstreamTarget) => Socket;

export interface ProxyLimits {
  /** Concurrent guest connections; more are answered 503 and closed. */
  readonly maxConnections: number;
  /** Request line + header bytes from the guest; more → 431. */
  readonly maxHeaderBytes: number;
  /** Response header bytes from upstream; more → 502. */
  readonly maxResponseHeaderBytes: number;
  /** Requests per guest connection (node:http's maxRequestsPerSocket; later ones get 503). */
  readonly maxRequestsPerConnection: number;
  /** Name resolution, including the wait for a lookup slot; → 504. */
  readonly dnsTimeoutMs: number;
  /** Lookups in flight at once (node:dns lookup runs on the libuv thread pool). */
  readonly maxConcurrentLookups: number;
  /** TCP connect to upstream, all attempts together; → 504. */
  readonly connectTimeoutMs: number;
  /** Upstream addresses tried in turn (all are checked first). */
  readonly maxConnectAttempts: number;
  /** A complete request head must arrive within this after the connection opens or the last response ends. */
  readonly headersTimeoutMs: number;
  /** No byte either way for this long while a request or tunnel is active → closed. */
  readonly idleTimeoutMs: number;
}

export const DEFAULT_LIMITS: ProxyLimits = Object.freeze({
  maxConnections: 64,
  maxHeaderBytes: 32 * 1024,
  maxResponseHeaderBytes: 64 * 1024,
  maxRequestsPerConnection: 1000,
  dnsTimeoutMs: 5_000,
  maxConcurrentLookups: 8,
  connectTimeoutMs: 10_000,
  maxConnectAttempts: 4,
  headersTimeoutMs: 30_000,
  idleTimeoutMs: 300_000,
});

export interface EgressProxyOptions {
  /** Default `deny-all`: a sandbox has no network unless the user allows it. */
  readonly mode?: ProxyMode;
  /** Ports a request may go to (default 80 and 443). */
  readonly allowedPorts?: readonly number[];
  /**
   * TESTS ONLY: exact `ip:port` destinations (`127.0.0.1:8080`, `[::1]:8080`)
   * allowed regardless of the address and port policy (not of `deny-all`).
   * Fixed at construction; nothing a guest sends can change it.
   */
  readonly allowForTests?: readonly string[];
  readonly resolve?: Resolver;
  readonly connect?: UpstreamConnector;
  /** The host's own addresses (refused even when public). Default: os.networkInterfaces(), cached 10 s. */
  readonly hostAddresses?: () => Iterable<string>;
  /** Each decision (rate-limited; see DecisionLog). */
  readonly onDecision?: (decision: ProxyDecision) => void;
  readonly log?: DecisionLogOptions;
  readonly limits?: Partial<ProxyLimits>;
}

export interface ProxyStats {
  readonly mode: ProxyMode;
  readonly activeConnections: number;
  readonly activeUpstreams: number;
  readonly totalConnections: number;
  readonly allowed: number;
  readonly refused: number;
  readonly badRequests: number;
  readonly failed: number;
}

/** node:dns lookup: every address, in the resolver's order. */
export const systemResolver: Resolver = (hostname) => lookup(hostname, { all: true, verbatim: true });

/** net.connect to the checked IP; its lookup can only ever answer that same IP. */
export const directConnector: UpstreamConnector = ({ address, family, port }) => {
  const pinned: LookupFunction = (_hostname, options, callback) => {
    if (options.all === true) callback(null, [{ address, family }]);
    else callback(null, address, family);
  };
  return netConnect({ host: address, port, family, lookup: pinned, autoSelectFamily: false, noDelay: true });
};

function systemHostAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);
/** Request headers the proxy sets itself. */
const REQUEST_OWN = new Set(['host', 'content-length', 'expect']);
/** Methods node:http sends without body framing; others get an explicit Content-Length: 0. */
const NO_BODY_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE']);
const REFUSAL_GRACE_MS = 2_000;
const HOST_ADDRESSES_TTL_MS = 10_000;

type Failure = {
  readonly ok: false;
  readonly status: number;
  readonly outcome: DecisionOutcome;
  readonly reason: string;
  readonly address?: string;
  readonly rule?: string;
};
type Authorized = { readonly ok: true; readonly addresses: readonly IpAddress[]; readonly rule: string };
type Connected = { readonly ok: true; readonly socket: Socket; readonly address: IpAddress };

const failure = (status: number, outcome: DecisionOutcome, reason: string, extra: Partial<Failure> = {}): Failure => ({
  ...extra,
  ok: false,
  status,
  outcome,
  reason,
});

function errorCode(err: unknown): string {
  if (err instanceof Error) {
    const code = 'code' in err ? err.code : undefined;
    return typeof code === 'string' ? code : err.message;
  }
  return String(err);
}

function responseBody(reason: string): string {
  return `Belljar egress proxy: ${reason.replace(/[^\x20-\x7e]/g, '?')}\n`;
}

/** Writes a complete proxy-generated response on a raw stream and closes it (after a grace period to flush). */
function endWithResponse(stream: Duplex, status: number, reason: string): void {
  if (stream.destroyed || !stream.writable) {
    stream.destroy();
    return;
  }
  const body = responseBody(reason);
  stream.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
      'Content-Type: text/plain; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Cache-Control: no-store\r\nConnection: close\r\n\r\n' +
      body,
  );
  // Read and drop whatever the guest still sends, so the response is not lost to a reset.
  stream.resume();
  const timer = setTimeout(() => stream.destroy(), REFUSAL_GRACE_MS);
  timer.unref();
  stream.once('close', () => clearTimeout(timer));
}

function sendResponse(res: ServerResponse, status: number, reason: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = responseBody(reason);
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    Connection: 'close',
  });
  res.end(body);
}

/** rawHeaders minus hop-by-hop headers, the ones `Connection` names, and `drop`. */
function filterHeaders(raw: readonly string[], drop: ReadonlySet<string>): string[] {
  const named = new Set<string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]?.toLowerCase() !== 'connection') continue;
    for (const token of (raw[i + 1] ?? '').split(',')) named.add(token.trim().toLowerCase());
  }
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? '';
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named.has(lower) || drop.has(lower)) continue;
    out.push(name, raw[i + 1] ?? '');
  }
  return out;
}

function headerValues(raw: readonly string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]?.toLowerCase() === name) values.push(raw[i + 1] ?? '');
  return values;
}

/** Framing and Host checks node:http's strict parser leaves to us; undefined when the request is fine. */
function requestProblem(req: IncomingMessage, target: HttpTarget): string | undefined {
  const raw = req.rawHeaders;
  const te = headerValues(raw, 'transfer-encoding');
  const cl = headerValues(raw, 'content-length');
  if (cl.length > 1) return 'duplicate Content-Length';
  if (te.length > 1 || (te.length === 1 && te[0]?.trim().toLowerCase() !== 'chunked')) {
    return 'unsupported Transfer-Encoding (only a single "chunked" is accepted)';
  }
  if (te.length === 1 && cl.length === 1) return 'both Content-Length and Transfer-Encoding';
  const hosts = headerValues(raw, 'host');
  if (hosts.length > 1) return 'duplicate Host header';
  const host = hosts[0];
  if (host !== undefined && !hostHeaderMatches(host, target, HTTP_DEFAULT_PORT)) {
    return 'Host header does not match the request target';
  }
  return undefined;
}

/** Per guest connection: its timer, its upstream sockets, its queue of requests (one at a time). */
class GuestConnection {
  readonly upstreams = new Set<Socket>();
  /** Requests being handled or queued. */
  pending = 0;
  tunnel = false;
  /** A parse error was answered; ignore further ones. */
  broken = false;
  /** Destroy once no request is pending. */
  closeWhenIdle = false;
  /** Set while a request body is being forwarded: fails that request (true if it did). */
  abortBody: ((reason: string) => boolean) | undefined;
  closed = false;
  #queue: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #idle = false;

  constructor(
    readonly id: number,
    readonly stream: Duplex,
    readonly limits: ProxyLimits,
    readonly onTimeout: (conn: GuestConnection, reason: string) => void,
  ) {}

  /** Between requests: the next complete request head must arrive in time (data does not extend it). */
  waitForHead(): void {
    this.#setTimer(
      this.limits.headersTimeoutMs,
      false,
      `no complete request within ${this.limits.headersTimeoutMs} ms`,
    );
  }

  /** While a request or tunnel is active: closed after idleTimeoutMs without a byte either way. */
  busy(): void {
    this.#setTimer(this.limits.idleTimeoutMs, true, `idle for ${this.limits.idleTimeoutMs} ms`);
  }

  /** Bytes moved. */
  touch(): void {
    if (this.#idle) this.#timer?.refresh();
  }

  enqueue(task: () => Promise<void>): void {
    this.pending++;
    this.busy();
    this.#queue = this.#queue
      .then(() => (this.closed ? undefined : task()))
      .catch(() => this.destroy())
      .finally(() => {
        this.pending--;
        if (this.pending > 0 || this.tunnel) return;
        if (this.closeWhenIdle) this.destroy();
        else this.waitForHead();
      });
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.#timer);
    for (const socket of this.upstreams) socket.destroy();
    this.upstreams.clear();
    this.stream.destroy();
  }

  #setTimer(ms: number, idle: boolean, reason: string): void {
    if (this.closed) return;
    clearTimeout(this.#timer);
    this.#idle = idle;
    this.#timer = setTimeout(() => this.onTimeout(this, reason), ms);
    this.#timer.unref();
  }
}

export class EgressProxy {
  readonly #limits: ProxyLimits;
  readonly #allowedPorts: ReadonlySet<number>;
  /** `ip|port` keys (canonical IP text). */
  readonly #testAllow: ReadonlySet<string>;
  readonly #testAllowPorts: ReadonlySet<number>;
  readonly #resolve: Resolver;
  readonly #connect: UpstreamConnector;
  readonly #hostAddressSource: () => Iterable<string>;
  readonly #log: DecisionLog;
  readonly #http: HttpServer;
  readonly #connections = new Map<object, GuestConnection>();
  #mode: ProxyMode;
  #nextId = 1;
  #tcp: NetServer | undefined;
  #closed = false;
  #lookupsActive = 0;
  readonly #lookupWaiters: Array<() => void> = [];
  #hostAddresses: { readonly at: number; readonly set: ReadonlySet<string> } | undefined;
  #counts = { totalConnections: 0, allowed: 0, refused: 0, badRequests: 0, failed: 0 };

  constructor(options: EgressProxyOptions = {}) {
    const limits: ProxyLimits = { ...DEFAULT_LIMITS, ...options.limits };
    for (const [name, value] of Object.entries(limits)) {
      if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`egress proxy: limit ${name} must be ≥ 1`);
    }
    this.#limits = Object.freeze(limits);
    this.#mode = EgressProxy.#checkMode(options.mode ?? 'deny-all');
    const ports = options.allowedPorts ?? DEFAULT_ALLOWED_PORTS;
    for (const port of ports) if (!isValidPort(port)) throw new RangeError(`egress proxy: bad port ${port}`);
    this.#allowedPorts = new Set(ports);
    const allow = new Set<string>();
    const allowPorts = new Set<number>();
    for (const entry of options.allowForTests ?? []) {
      const parsed = parseAuthority(entry);
      if (!parsed.ok || parsed.value.host.kind !== 'ip') {
        throw new Error(`egress proxy: allowForTests entries are ip:port, got ${JSON.stringify(entry)}`);
      }
      allow.add(`${checkAddress(parsed.value.host.ip).connectTo.text}|${parsed.value.port}`);
      allowPorts.add(parsed.value.port);
    }
    this.#testAllow = allow;
    this.#testAllowPorts = allowPorts;
    this.#resolve = options.resolve ?? systemResolver;
    this.#connect = options.connect ?? directConnector;
    this.#hostAddressSource = options.hostAddresses ?? systemHostAddresses;
    this.#log = new DecisionLog(options.onDecision, options.log);

    // node:http parses the guest's requests (strict llhttp: it refuses Content-Length with
    // Transfer-Encoding, duplicate Content-Length, obs-fold, bare LF, bad tokens). It never
    // listens: connections are handed to it. Its own timeouts are off; ours are per connection.
    this.#http = createHttpServer({
      maxHeaderSize: this.#limits.maxHeaderBytes,
      insecureHTTPParser: false,
      requireHostHeader: false,
      joinDuplicateHeaders: false,
      keepAliveTimeout: 0,
      requestTimeout: 0,
      headersTimeout: 0,
    });
    this.#http.maxRequestsPerSocket = this.#limits.maxRequestsPerConnection;
    this.#http.timeout = 0;
    this.#http.on('request', (req, res) => this.#onRequest(req, res));
    this.#http.on('connect', (req, socket, head) => this.#onConnect(req, socket, head));
    this.#http.on('clientError', (err, socket) => this.#onClientError(err, socket));
  }

  get mode(): ProxyMode {
    return this.#mode;
  }

  /** Switching to `deny-all` also closes every open tunnel and upstream request. */
  setMode(mode: ProxyMode): void {
    this.#mode = EgressProxy.#checkMode(mode);
    if (mode !== 'deny-all') return;
    for (const conn of this.#connections.values()) {
      if (conn.upstreams.size === 0) continue;
      this.#record(conn, 'connection', '-', 'closed', 0, 'network access turned off (deny-all)');
      conn.destroy();
    }
  }

  get stats(): ProxyStats {
    let activeUpstreams = 0;
    for (const conn of this.#connections.values()) activeUpstreams += conn.upstreams.size;
    return { mode: this.#mode, activeConnections: this.#connections.size, activeUpstreams, ...this.#counts };
  }

  /** The last decisions (bounded), oldest first. */
  recentDecisions(): readonly ProxyDecision[] {
    return this.#log.recent();
  }

  /** One guest connection (a vsock stream to the proxy port, or a TCP socket from `listen`). */
  handleConnection(stream: Duplex): void {
    if (this.#closed || stream.destroyed) {
      stream.destroy();
      return;
    }
    const id = this.#nextId++;
    this.#counts.totalConnections++;
    stream.on('error', () => {
      const conn = this.#connections.get(stream);
      if (conn === undefined) stream.destroy();
      else conn.destroy();
    });
    if (this.#connections.size >= this.#limits.maxConnections) {
      const reason = `too many connections (limit ${this.#limits.maxConnections})`;
      this.#log.record({ connection: id, request: 'connection', target: '-', outcome: 'refused', status: 503, reason });
      this.#counts.refused++;
      endWithResponse(stream, 503, reason);
      return;
    }
    const conn = new GuestConnection(id, stream, this.#limits, (c, reason) => this.#onTimeout(c, reason));
    this.#connections.set(stream, conn);
    stream.once('close', () => {
      this.#connections.delete(stream);
      conn.destroy();
    });
    conn.waitForHead();
    this.#http.emit('connection', stream);
  }

  /** Serve on a loopback TCP port (tests, debugging). Resolves with the bound address. */
  async listen(port = 0, host = '127.0.0.1'): Promise<AddressInfo> {
    if (host !== '127.0.0.1' && host !== '::1' && host !== 'localhost') {
      throw new Error('egress proxy: listen() binds only to loopback');
    }
    if (this.#tcp !== undefined || this.#closed) throw new Error('egress proxy: already listening or closed');
    // allowHalfOpen: a guest's half-close travels through a tunnel, as it does over vsock.
    const server = createNetServer({ allowHalfOpen: true }, (socket) => this.handleConnection(socket));
    this.#tcp = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('egress proxy: no TCP address');
    return address;
  }

  /** Closes every connection (guest and upstream) and the TCP listener; handleConnection refuses from now on. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const conn of [...this.#connections.values()]) conn.destroy();
    const server = this.#tcp;
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  static #checkMode(mode: ProxyMode): ProxyMode {
    if (mode !== 'deny-all' && mode !== 'public-web') throw new Error(`egress proxy: unknown mode ${String(mode)}`);
    return mode;
  }

  #record(
    conn: GuestConnection,
    request: DecisionInput['request'],
    target: string,
    outcome: DecisionOutcome,
    status: number,
    reason: string,
    extra: { readonly address?: string; readonly rule?: string } = {},
  ): void {
    if (outcome === 'allowed') this.#counts.allowed++;
    else if (outcome === 'refused') this.#counts.refused++;
    else if (outcome === 'bad-request') this.#counts.badRequests++;
    else if (outcome === 'failed') this.#counts.failed++;
    this.#log.record({ connection: conn.id, request, target, outcome, status, reason, ...extra });
  }

  #recordFailure(conn: GuestConnection, request: DecisionInput['request'], target: string, f: Failure): void {
    const extra = {
      ...(f.address === undefined ? {} : { address: f.address }),
      ...(f.rule === undefined ? {} : { rule: f.rule }),
    };
    this.#record(conn, request, target, f.outcome, f.status, f.reason, extra);
  }

  #onTimeout(conn: GuestConnection, reason: string): void {
    if (conn.pending > 0 || conn.tunnel || conn.upstreams.size > 0) {
      this.#record(conn, 'connection', '-', 'closed', 0, reason);
    }
    conn.destroy();
  }

  #onClientError(err: Error, socket: Duplex): void {
    const conn = this.#connections.get(socket);
    if (conn === undefined || conn.closed) {
      socket.destroy();
      return;
    }
    if (conn.broken) return; // the parser stays failed; answered (or closing) already
    conn.broken = true;
    const code = errorCode(err);
    if (!code.startsWith('HPE_') || conn.tunnel) {
      conn.destroy();
      return;
    }
    if (conn.pending > 0) {
      // Responses are still due on this connection: no 400 in the middle of them. A body being
      // forwarded is cut off (its request fails); the connection closes once they are done.
      conn.closeWhenIdle = true;
      if (conn.abortBody?.(`malformed request body (${code})`) !== true) {
        this.#record(conn, 'http', '-', 'closed', 0, `malformed pipelined request (${code}): closing`);
      }
      return;
    }
    const overflow = code === 'HPE_HEADER_OVERFLOW';
    const status = overflow ? 431 : 400;
    const reason = overflow
      ? `request header too large (limit ${this.#limits.maxHeaderBytes} bytes)`
      : `malformed request: ${err.message.replace(/^Parse Error: /, '')} (${code})`;
    this.#record(conn, 'http', '-', 'bad-request', status, reason);
    endWithResponse(socket, status, reason);
  }

  // ---------------------------------------------------------------------------
  // Policy: mode, port, name, resolution, every address

  async #authorize(target: RequestTarget): Promise<Authorized | Failure> {
    if (this.#mode === 'deny-all') return failure(403, 'refused', 'network access is off for this sandbox');
    const { host, port } = target;
    const portAllowed = this.#allowedPorts.has(port);
    let candidates: readonly IpAddress[];
    if (host.kind === 'ip') {
      candidates = [host.ip];
    } else {
      if (!portAllowed && !this.#testAllowPorts.has(port)) {
        return failure(403, 'refused', `port ${port} is not allowed`);
      }
      const name = checkHostName(host.name);
      if (!name.allowed) return failure(403, 'refused', name.reason);
      const answer = await this.#lookup(host.name);
      if (!answer.ok) return answer;
      if (this.#mode !== 'public-web') return failure(403, 'refused', 'network access is off for this sandbox');
      candidates = answer.addresses;
    }
    const own = this.#currentHostAddresses();
    const allowed = new Map<string, IpAddress>();
    let rule = '';
    for (const ip of candidates) {
      const verdict = checkAddress(ip, { hostAddresses: own });
      const connectTo = verdict.connectTo;
      if (this.#testAllow.has(`${connectTo.text}|${port}`)) {
        allowed.set(connectTo.text, connectTo);
        rule ||= 'allowForTests';
        continue;
      }
      if (!portAllowed) return failure(403, 'refused', `port ${port} is not allowed`);
      if (!verdict.allowed) {
        const what = `${verdict.kind} address`;
        // The guest learns the class, not the address a name resolved to (the log has it).
        const reason = host.kind === 'name' ? `${host.name} resolves to a forbidden ${what}` : `forbidden ${what}`;
        return failure(403, 'refused', reason, { address: ip.text, rule: `${verdict.rule} ${verdict.reason}` });
      }
      allowed.set(connectTo.text, connectTo);
      rule ||= verdict.rule;
    }
    return { ok: true, addresses: [...allowed.values()], rule };
  }

  async #lookup(name: string): Promise<{ readonly ok: true; readonly addresses: IpAddress[] } | Failure> {
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => {
        timedOut = true;
        resolve('timeout');
      }, this.#limits.dnsTimeoutMs);
    });
    try {
      const answer = await Promise.race([this.#withLookupSlot(() => timedOut, name), timeout]);
      if (answer === 'timeout') return failure(504, 'failed', `DNS lookup of ${name} timed out`);
      if (answer.length === 0) return failure(502, 'failed', `${name} has no addresses`);
      const addresses: IpAddress[] = [];
      for (const entry of answer) {
        const ip = typeof entry.address === 'string' ? parseIp(entry.address) : undefined;
        if (ip === undefined) return failure(502, 'failed', `unusable DNS answer for ${name}`);
        addresses.push(ip);
      }
      return { ok: true, addresses };
    } catch (err) {
      return failure(502, 'failed', `${name} not resolved (${errorCode(err)})`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** At most maxConcurrentLookups in flight; a slot is released when the lookup really ends. */
  async #withLookupSlot(abandoned: () => boolean, name: string): Promise<readonly ResolvedAddress[]> {
    if (this.#lookupsActive >= this.#limits.maxConcurrentLookups) {
      await new Promise<void>((resolve) => this.#lookupWaiters.push(resolve));
    } else {
      this.#lookupsActive++;
    }
    try {
      if (abandoned()) return [];
      return await this.#resolve(name);
    } finally {
      const next = this.#lookupWaiters.shift();
      if (next !== undefined) next();
      else this.#lookupsActive--;
    }
  }

  #currentHostAddresses(): ReadonlySet<string> {
    const now = Date.now();
    if (this.#hostAddresses === undefined || now - this.#hostAddresses.at > HOST_ADDRESSES_TTL_MS) {
      const set = new Set<string>();
      try {
        for (const text of this.#hostAddressSource()) {
          const ip = parseIp(text);
          if (ip !== undefined) set.add(checkAddress(ip).connectTo.text);
        }
      } catch {
        // No interface list: the address table still applies.
      }
      this.#hostAddresses = { at: now, set };
    }
    return this.#hostAddresses.set;
  }

  // ---------------------------------------------------------------------------
  // Upstream connections

  async #openUpstream(
    conn: GuestConnection,
    addresses: readonly IpAddress[],
    port: number,
  ): Promise<Connected | Failure> {
    const deadline = performance.now() + this.#limits.connectTimeoutMs;
    let last: Failure = failure(502, 'failed', 'no address to connect to');
    for (const ip of addresses.slice(0, this.#limits.maxConnectAttempts)) {
      const remaining = deadline - performance.now();
      if (remaining <= 0 || conn.closed) break;
      const result = await this.#connectOne(conn, ip, port, remaining);
      if (result.ok) return result;
      last = result;
    }
    return last;
  }

  #connectOne(conn: GuestConnection, ip: IpAddress, port: number, timeoutMs: number): Promise<Connected | Failure> {
    return new Promise((resolve) => {
      const where = { address: ip.text };
      let socket: Socket;
      try {
        socket = this.#connect({ address: ip.text, family: ip.family, port });
      } catch (err) {
        resolve(failure(502, 'failed', `connect failed (${errorCode(err)})`, where));
        return;
      }
      socket.on('error', () => undefined); // surfaced through 'close' and the handlers below
      if (conn.closed) {
        socket.destroy();
        resolve(failure(502, 'failed', 'guest connection closed', where));
        return;
      }
      conn.upstreams.add(socket);
      socket.once('close', () => conn.upstreams.delete(socket));
      const settle = (result: Connected | Failure): void => {
        clearTimeout(timer);
        socket.off('connect', onConnect);
        socket.off('error', onError);
        socket.off('close', onClose);
        if (!result.ok) socket.destroy();
        resolve(result);
      };
      const onConnect = (): void => settle({ ok: true, socket, address: ip });
      const onError = (err: Error): void => settle(failure(502, 'failed', `connect failed (${errorCode(err)})`, where));
      const onClose = (): void => settle(failure(502, 'failed', 'upstream closed while connecting', where));
      const timer = setTimeout(
        () => settle(failure(504, 'failed', `connect timed out after ${Math.round(timeoutMs)} ms`, where)),
        timeoutMs,
      );
      timer.unref();
      socket.once('connect', onConnect);
      socket.once('error', onError);
      socket.once('close', onClose);
      if (!socket.pending && !socket.connecting && !socket.destroyed) settle({ ok: true, socket, address: ip });
    });
  }

  // ---------------------------------------------------------------------------
  // CONNECT

  #onConnect(req: IncomingMessage, stream: Duplex, head: Buffer): void {
    const conn = this.#connections.get(stream);
    if (conn === undefined || conn.closed) {
      stream.destroy();
      return;
    }
    conn.tunnel = true;
    conn.busy();
    this.#handleConnect(conn, req, head).catch((err: unknown) => {
      this.#record(conn, 'connect', '-', 'closed', 0, `internal error: ${errorCode(err)}`);
      conn.destroy();
    });
  }

  async #handleConnect(conn: GuestConnection, req: IncomingMessage, head: Buffer): Promise<void> {
    const stream = conn.stream;
    const raw = req.url ?? '';
    const refuse = (f: Failure, target: string): void => {
      if (conn.closed) return; // the guest went away (or setMode closed it): nothing to answer
      this.#recordFailure(conn, 'connect', target, f);
      endWithResponse(stream, f.status, f.reason);
    };
    if (req.httpVersionMajor !== 1) return refuse(failure(505, 'bad-request', 'only HTTP/1.x'), raw);
    const parsed = parseConnectTarget(raw);
    if (!parsed.ok) return refuse(failure(400, 'bad-request', `bad CONNECT target: ${parsed.reason}`), raw);
    const target = parsed.value;
    const label = `${target.hostText}:${target.port}`;
    const auth = await this.#authorize(target);
    if (!auth.ok) return refuse(auth, label);
    if (conn.closed) return;
    const up = await this.#openUpstream(conn, auth.addresses, target.port);
    if (!up.ok) return refuse(up, label);
    const upstream = up.socket;
    if (conn.closed || this.#mode !== 'public-web') {
      upstream.destroy();
      return refuse(failure(403, 'refused', 'network access is off for this sandbox'), label);
    }
    this.#record(conn, 'connect', label, 'allowed', 200, 'tunnel open', { address: up.address.text, rule: auth.rule });
    stream.write('HTTP/1.1 200 Connection established\r\n\r\n');
    if (head.length > 0) upstream.write(head);
    this.#splice(conn, stream, upstream);
  }

  /** Bytes both ways with backpressure; half-closes are passed on; either side failing closes both. */
  #splice(conn: GuestConnection, guest: Duplex, upstream: Socket): void {
    const pump = (from: Duplex, to: Duplex): void => {
      from.on('data', (chunk: Buffer) => {
        conn.touch();
        if (!to.write(chunk)) from.pause();
      });
      to.on('drain', () => from.resume());
      from.once('end', () => to.end());
    };
    pump(guest, upstream);
    pump(upstream, guest);
    upstream.once('close', (hadError: boolean) => {
      if (hadError || guest.writableFinished) conn.destroy();
      else guest.once('finish', () => conn.destroy());
    });
  }

  // ---------------------------------------------------------------------------
  // Plain HTTP

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const conn = this.#connections.get(req.socket);
    if (conn === undefined || conn.closed) {
      res.destroy();
      return;
    }
    conn.enqueue(() => this.#handleHttp(conn, req, res));
  }

  async #handleHttp(conn: GuestConnection, req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.sendDate = false;
    const raw = req.url ?? '';
    const refuse = (f: Failure, target: string): Promise<void> => {
      if (conn.closed) return Promise.resolve();
      this.#recordFailure(conn, 'http', target, f);
      sendResponse(res, f.status, f.reason);
      return responseClosed(res);
    };
    if (req.httpVersionMajor !== 1) return refuse(failure(505, 'bad-request', 'only HTTP/1.x'), raw);
    const parsed = parseAbsoluteHttpUrl(raw);
    if (!parsed.ok) return refuse(failure(400, 'bad-request', parsed.reason), raw);
    const target = parsed.value;
    const label = `${target.hostText}:${target.port}`;
    const problem = requestProblem(req, target);
    if (problem !== undefined) return refuse(failure(400, 'bad-request', problem), label);
    if (conn.broken && !req.complete) return refuse(failure(400, 'bad-request', 'malformed request body'), label);
    const auth = await this.#authorize(target);
    if (!auth.ok) return refuse(auth, label);
    if (conn.closed) return;
    const up = await this.#openUpstream(conn, auth.addresses, target.port);
    if (!up.ok) return refuse(up, label);
    if (conn.closed || this.#mode !== 'public-web') {
      up.socket.destroy();
      return refuse(failure(403, 'refused', 'network access is off for this sandbox'), label);
    }
    this.#record(conn, 'http', label, 'allowed', 0, `${req.method ?? '?'} forwarded`, {
      address: up.address.text,
      rule: auth.rule,
    });
    return this.#forward(conn, req, res, target, up.socket);
  }

  #forward(
    conn: GuestConnection,
    req: IncomingMessage,
    res: ServerResponse,
    target: HttpTarget,
    socket: Socket,
  ): Promise<void> {
    const method = req.method ?? 'GET';
    const raw = req.rawHeaders;
    const hostHeader = headerValues(raw, 'host')[0];
    const authority = target.port === HTTP_DEFAULT_PORT ? target.hostText : `${target.hostText}:${target.port}`;
    const framing =
      headerValues(raw, 'transfer-encoding').length > 0
        ? ['Transfer-Encoding', 'chunked']
        : headerValues(raw, 'content-length')
            .map((v) => ['Content-Length', v.trim()])
            .flat();
    if (framing.length === 0 && !NO_BODY_METHODS.has(method)) framing.push('Content-Length', '0');
    const headers = [
      'Host',
      hostHeader ?? authority,
      ...filterHeaders(raw, REQUEST_OWN),
      ...framing,
      'Connection',
      'close',
    ];
    const label = `${target.hostText}:${target.port}`;
    if (conn.broken && !req.complete) {
      // The parser already failed inside this request's body.
      socket.destroy();
      this.#record(conn, 'http', label, 'bad-request', 400, 'malformed request body');
      sendResponse(res, 400, 'malformed request body');
      return responseClosed(res);
    }
    return new Promise<void>((resolve) => {
      let done = false;
      let aborted = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        if (conn.abortBody === abortBody) conn.abortBody = undefined;
        socket.destroy();
        resolve();
      };
      const abortBody = (reason: string): boolean => {
        if (done || aborted || req.complete) return false;
        aborted = true;
        this.#record(conn, 'http', label, 'bad-request', res.headersSent ? 0 : 400, reason);
        sendResponse(res, 400, reason);
        out.destroy();
        return true;
      };
      conn.abortBody = abortBody;
      res.once('close', finish);
      const out = httpRequest({
        createConnection: () => socket,
        method,
        path: target.path,
        headers,
        setHost: false,
        maxHeaderSize: this.#limits.maxResponseHeaderBytes,
        insecureHTTPParser: false,
      });
      out.on('error', (err) => {
        if (done || aborted) return;
        if (!res.headersSent) {
          const reason = `upstream error (${errorCode(err)})`;
          this.#record(conn, 'http', label, 'failed', 502, reason);
          sendResponse(res, 502, reason);
        } else {
          res.destroy();
        }
      });
      out.on('response', (upRes) => {
        try {
          res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, filterHeaders(upRes.rawHeaders, new Set()));
        } catch (err) {
          upRes.destroy();
          const reason = `unusable upstream response (${errorCode(err)})`;
          this.#record(conn, 'http', label, 'failed', 502, reason);
          sendResponse(res, 502, reason);
          return;
        }
        upRes.on('data', (chunk: Buffer) => {
          conn.touch();
          if (!res.write(chunk)) upRes.pause();
        });
        res.on('drain', () => upRes.resume());
        upRes.once('end', () => res.end());
        upRes.once('aborted', () => res.destroy());
        upRes.once('error', () => res.destroy());
      });
      req.on('data', (chunk: Buffer) => {
        conn.touch();
        if (!out.write(chunk)) req.pause();
      });
      out.on('drain', () => req.resume());
      req.once('end', () => out.end());
      req.once('error', () => out.destroy());
    });
  }
}

function responseClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    if (res.closed) resolve();
    else res.once('close', () => resolve());
  });
}
