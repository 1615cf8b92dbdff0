/**
 * The request targets a proxy sees (RFC 9112 §3.2), parsed strictly and
 * without I/O: the authority-form of CONNECT (`host:port`) and the
 * absolute-form of a plain-HTTP request (`http://host[:port]/path?query`).
 * Hosts go through `parseHost` (address-policy.ts), so numeric forms that are
 * not a strict dotted quad, zone ids and user info are errors.
 */
import { isValidPort, parseHost } from './address-policy.js';
import type { HostTarget, Parsed } from './address-policy.js';

export interface RequestTarget {
  readonly host: HostTarget;
  /** The host, canonical: a lower-case name, a dotted quad, or `[v6]`. */
  readonly hostText: string;
  readonly port: number;
}

export interface HttpTarget extends RequestTarget {
  /** origin-form for the upstream request: `/path?query` (at least `/`). */
  readonly path: string;
}

export const HTTP_DEFAULT_PORT = 80;

/** `host`, `host:port`, `[v6]`, `[v6]:port`; the port is required unless `defaultPort` is given. */
export function parseAuthority(authority: string, defaultPort?: number): Parsed<RequestTarget> {
  if (authority.includes('@')) return { ok: false, reason: 'user info in the authority' };
  let hostPart = authority;
  let portText: string | undefined;
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    if (end < 0) return { ok: false, reason: 'unterminated IPv6 literal' };
    hostPart = authority.slice(0, end + 1);
    const rest = authority.slice(end + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return { ok: false, reason: 'bad authority' };
      portText = rest.slice(1);
    }
  } else {
    const colon = authority.lastIndexOf(':');
    if (colon >= 0) {
      hostPart = authority.slice(0, colon);
      portText = authority.slice(colon + 1);
    }
  }
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) return { ok: false, reason: 'port missing' };
    port = defaultPort;
  } else {
    port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : NaN;
    if (!isValidPort(port)) return { ok: false, reason: 'bad port' };
  }
  const host = parseHost(hostPart);
  if (!host.ok) return host;
  const v = host.value;
  const hostText = v.kind === 'name' ? v.name : v.ip.family === 6 ? `[${v.ip.text}]` : v.ip.text;
  return { ok: true, value: { host: v, hostText, port } };
}

/** CONNECT's authority-form: `host:port`, port required. */
export function parseConnectTarget(target: string): Parsed<RequestTarget> {
  return parseAuthority(target);
}

/** A plain-HTTP proxy request's absolute-form: `http://authority[/path][?query]`, no fragment. */
export function parseAbsoluteHttpUrl(url: string): Parsed<HttpTarget> {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url);
  if (scheme === null) {
    return { ok: false, reason: 'not an absolute-form request (this is a proxy: use http://host/path or CONNECT)' };
  }
  if (scheme[1]?.toLowerCase() !== 'http') {
    return { ok: false, reason: `scheme ${scheme[1]?.toLowerCase() ?? ''}: not proxied (https goes through CONNECT)` };
  }
  const rest = url.slice(scheme[0].length);
  if (rest.includes('#')) return { ok: false, reason: 'fragment in the request target' };
  const end = rest.search(/[/?]/);
  const authority = end < 0 ? rest : rest.slice(0, end);
  let path = end < 0 ? '/' : rest.slice(end);
  if (path.startsWith('?')) path = `/${path}`;
  const parsed = parseAuthority(authority, HTTP_DEFAULT_PORT);
  if (!parsed.ok) return parsed;
  return { ok: true, value: { ...parsed.value, path } };
}

/** Whether a Host header names the same host and port as the target (the default port may be implied). */
export function hostHeaderMatches(hostHeader: string, target: RequestTarget, defaultPort: number): boolean {
  const parsed = parseAuthority(hostHeader.trim(), defaultPort);
  return parsed.ok && parsed.value.hostText === target.hostText && parsed.value.port === target.port;
}
