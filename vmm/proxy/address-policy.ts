/**
 * Where a sandbox's web traffic may go: pure functions over a table of address
 * ranges (no I/O, no DNS). The egress proxy (`egress-proxy.ts`) asks these
 * questions for every IP literal and for every address a host name resolves to.
 *
 * - `parseIp` parses an address strictly: dotted-quad decimal IPv4 only (no
 *   octal, hex, short or single-number forms), IPv6 without zone ids.
 * - `checkAddress` finds the most specific rule (longest prefix) of
 *   `IPV4_RULES` / `IPV6_RULES`. IPv6 forms that carry an IPv4 address
 *   (IPv4-mapped, NAT64, 6to4, Teredo) are decided by the IPv4 they carry.
 * - `parseHost` classifies a request's host: an IP literal, a host name, or an
 *   error (numeric forms that are not a strict dotted quad are errors, never names).
 * - `checkHostName` refuses names that only make sense on a local network.
 * - `checkPort` is the port policy.
 *
 * docs/egress-proxy.md has the table in prose.
 */
import { isIPv4, isIPv6 } from 'node:net';

export type IpFamily = 4 | 6;

export interface IpAddress {
  readonly family: IpFamily;
  /** 4 or 16 bytes, network order. */
  readonly bytes: Uint8Array;
  /** Canonical text: dotted quad, or RFC 5952 for IPv6. */
  readonly text: string;
}

/** What an address is; `public` is the only class a sandbox may reach. */
export type AddressKind =
  | 'public'
  | 'unspecified'
  | 'loopback'
  | 'private'
  | 'cgnat'
  | 'link-local'
  | 'multicast'
  | 'broadcast'
  | 'reserved'
  | 'documentation'
  | 'benchmark'
  | 'metadata'
  | 'ula'
  | 'site-local'
  | 'ipv4-compatible'
  | 'nat64-local'
  | 'not-global-unicast'
  | 'host-own';

/**
 * `allow` and `refuse` decide; `embedded-ipv4` means the range carries an IPv4
 * address (where: `embedding`) and that IPv4 address decides.
 */
export type RuleAction = 'allow' | 'refuse' | 'embedded-ipv4';

/** IPv6 forms with an IPv4 address inside. */
export type Embedding = 'ipv4-mapped' | 'nat64' | '6to4' | 'teredo';

export interface AddressRule {
  readonly cidr: string;
  readonly action: RuleAction;
  readonly kind: AddressKind;
  readonly embedding?: Embedding;
  /** One line for logs and docs. */
  readonly description: string;
}

const rule = (cidr: string, action: RuleAction, kind: AddressKind, description: string): AddressRule => ({
  cidr,
  action,
  kind,
  description,
});
const embedded = (cidr: string, embedding: Embedding, description: string): AddressRule => ({
  cidr,
  action: 'embedded-ipv4',
  kind: 'public',
  embedding,
  description,
});

/** IPv4: everything is public except these (IANA special-purpose registry, RFC 6890, plus cloud metadata). */
export const IPV4_RULES: readonly AddressRule[] = Object.freeze([
  rule('0.0.0.0/0', 'allow', 'public', 'public unicast'),
  rule('0.0.0.0/8', 'refuse', 'unspecified', '"this network" / unspecified (RFC 1122)'),
  rule('10.0.0.0/8', 'refuse', 'private', 'private network (RFC 1918)'),
  rule('100.64.0.0/10', 'refuse', 'cgnat', 'shared address space / carrier-grade NAT (RFC 6598)'),
  rule('100.100.100.200/32', 'refuse', 'metadata', 'cloud metadata (Alibaba Cloud)'),
  rule('127.0.0.0/8', 'refuse', 'loopback', 'loopback'),
  rule('168.63.129.16/32', 'refuse', 'metadata', 'cloud metadata (Azure WireServer, a public address)'),
  rule('169.254.0.0/16', 'refuse', 'link-local', 'link-local (RFC 3927)'),
  rule('169.254.169.123/32', 'refuse', 'metadata', 'cloud metadata (AWS time service)'),
  rule('169.254.169.253/32', 'refuse', 'metadata', 'cloud metadata (AWS DNS)'),
  rule('169.254.169.254/32', 'refuse', 'metadata', 'cloud metadata (AWS, GCP, Azure, OpenStack, DigitalOcean …)'),
  rule('169.254.170.2/32', 'refuse', 'metadata', 'cloud metadata (AWS ECS task credentials)'),
  rule('172.16.0.0/12', 'refuse', 'private', 'private network (RFC 1918)'),
  rule('192.0.0.0/24', 'refuse', 'reserved', 'IETF protocol assignments (RFC 6890)'),
  rule('192.0.0.192/32', 'refuse', 'metadata', 'cloud metadata (Oracle Cloud)'),
  rule('192.0.2.0/24', 'refuse', 'documentation', 'documentation TEST-NET-1 (RFC 5737)'),
  rule('192.88.99.0/24', 'refuse', 'reserved', 'deprecated 6to4 relay anycast (RFC 7526)'),
  rule('192.168.0.0/16', 'refuse', 'private', 'private network (RFC 1918)'),
  rule('198.18.0.0/15', 'refuse', 'benchmark', 'benchmarking (RFC 2544)'),
  rule('198.51.100.0/24', 'refuse', 'documentation', 'documentation TEST-NET-2 (RFC 5737)'),
  rule('203.0.113.0/24', 'refuse', 'documentation', 'documentation TEST-NET-3 (RFC 5737)'),
  rule('224.0.0.0/4', 'refuse', 'multicast', 'multicast'),
  rule('240.0.0.0/4', 'refuse', 'reserved', 'reserved for future use'),
  rule('255.255.255.255/32', 'refuse', 'broadcast', 'limited broadcast'),
]);

/** IPv6: only global unicast (2000::/3) is public, minus these; IPv4-carrying forms defer to IPV4_RULES. */
export const IPV6_RULES: readonly AddressRule[] = Object.freeze([
  rule('::/0', 'refuse', 'not-global-unicast', 'outside global unicast 2000::/3'),
  rule('::/128', 'refuse', 'unspecified', 'unspecified'),
  rule('::1/128', 'refuse', 'loopback', 'loopback'),
  rule('::/96', 'refuse', 'ipv4-compatible', 'deprecated IPv4-compatible form ::a.b.c.d (RFC 4291)'),
  embedded('::ffff:0:0/96', 'ipv4-mapped', 'IPv4-mapped ::ffff:a.b.c.d: decided by the IPv4 address'),
  rule('::ffff:0:0:0/96', 'refuse', 'reserved', 'IPv4-translated ::ffff:0:a.b.c.d (RFC 2765)'),
  embedded('64:ff9b::/96', 'nat64', 'NAT64 well-known prefix (RFC 6052): decided by the IPv4 address'),
  rule('64:ff9b:1::/48', 'refuse', 'nat64-local', 'local-use NAT64 (RFC 8215)'),
  rule('100::/64', 'refuse', 'reserved', 'discard-only (RFC 6666)'),
  rule('2000::/3', 'allow', 'public', 'global unicast'),
  rule('2001::/23', 'refuse', 'reserved', 'IETF protocol assignments (RFC 2928)'),
  embedded('2001::/32', 'teredo', 'Teredo (RFC 4380): decided by the server and client IPv4 addresses'),
  rule('2001:2::/48', 'refuse', 'benchmark', 'benchmarking (RFC 5180)'),
  rule('2001:db8::/32', 'refuse', 'documentation', 'documentation (RFC 3849)'),
  embedded('2002::/16', '6to4', '6to4 (RFC 3056): decided by the IPv4 address'),
  rule('3fff::/20', 'refuse', 'documentation', 'documentation (RFC 9637)'),
  rule('fc00::/7', 'refuse', 'ula', 'unique local addresses (RFC 4193)'),
  rule('fd00:ec2::254/128', 'refuse', 'metadata', 'cloud metadata (AWS IMDS over IPv6)'),
  rule('fd00:ec2::253/128', 'refuse', 'metadata', 'cloud metadata (AWS DNS over IPv6)'),
  rule('fd00:ec2::123/128', 'refuse', 'metadata', 'cloud metadata (AWS time service over IPv6)'),
  rule('fd20:ce::254/128', 'refuse', 'metadata', 'cloud metadata (GCP over IPv6)'),
  rule('fe80::/10', 'refuse', 'link-local', 'link-local'),
  rule('fec0::/10', 'refuse', 'site-local', 'deprecated site-local (RFC 3879)'),
  rule('ff00::/8', 'refuse', 'multicast', 'multicast'),
]);

// ---------------------------------------------------------------------------
// Parsing and formatting

/** Strict dotted-quad decimal (Node's `isIPv4`: four parts, 0–255, no leading zeros). */
export function parseIpv4(text: string): IpAddress | undefined {
  if (text.length > 15 || !isIPv4(text)) return undefined;
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p))) return undefined;
  const bytes = Uint8Array.from(parts, Number);
  return { family: 4, bytes, text: formatIpv4(bytes) };
}

/** IPv6 text form (RFC 4291 §2.2, validated by Node's `isIPv6`); zone ids (`%eth0`) are refused. */
export function parseIpv6(text: string): IpAddress | undefined {
  if (text.length > 45 || text.includes('%') || !isIPv6(text)) return undefined;
  let hex = text.toLowerCase();
  const lastColon = hex.lastIndexOf(':');
  const tail = hex.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = parseIpv4(tail);
    if (v4 === undefined) return undefined;
    const [a = 0, b = 0, c = 0, d = 0] = v4.bytes;
    hex = `${hex.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = hex.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (s: string | undefined): string[] => (s === undefined || s === '' ? [] : s.split(':'));
  const left = groupsOf(halves[0]);
  const right = groupsOf(halves[1]);
  const missing = 8 - left.length - right.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const groups = [...left, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...right];
  const bytes = new Uint8Array(16);
  for (const [i, group] of groups.entries()) {
    if (!/^[0-9a-f]{1,4}$/.test(group)) return undefined;
    const value = parseInt(group, 16);
    bytes[i * 2] = value >> 8;
    bytes[i * 2 + 1] = value & 0xff;
  }
  return { family: 6, bytes, text: formatIpv6(bytes) };
}

/** An IPv4 or IPv6 literal (no brackets), strictly; anything else is `undefined`. */
export function parseIp(text: string): IpAddress | undefined {
  return parseIpv4(text) ?? parseIpv6(text);
}

export function formatIpv4(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 4)).join('.');
}

/** RFC 5952: lower case, no leading zeros, the longest run (≥ 2) of zero groups as `::`. */
export function formatIpv6(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (list: number[]): string => list.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

// ---------------------------------------------------------------------------
// The address policy

interface CompiledRule {
  readonly rule: AddressRule;
  readonly bytes: Uint8Array;
  readonly prefix: number;
}

function compile(rules: readonly AddressRule[], family: IpFamily): readonly CompiledRule[] {
  return rules.map((r) => {
    const [base = '', prefixText = ''] = r.cidr.split('/');
    const ip = parseIp(base);
    const prefix = Number(prefixText);
    const bits = family === 4 ? 32 : 128;
    if (ip === undefined || ip.family !== family || !/^[0-9]{1,3}$/.test(prefixText) || prefix > bits) {
      throw new Error(`address-policy: bad rule ${r.cidr}`);
    }
    if (hostBitsSet(ip.bytes, prefix)) {
      throw new Error(`address-policy: rule ${r.cidr} has host bits set`);
    }
    return { rule: r, bytes: ip.bytes, prefix };
  });
}

function hostBitsSet(bytes: Uint8Array, prefix: number): boolean {
  for (let bit = prefix; bit < bytes.length * 8; bit++) {
    if (((bytes[bit >> 3] ?? 0) >> (7 - (bit & 7))) & 1) return true;
  }
  return false;
}

function matchesPrefix(address: Uint8Array, base: Uint8Array, prefix: number): boolean {
  const whole = prefix >> 3;
  for (let i = 0; i < whole; i++) if (address[i] !== base[i]) return false;
  const rest = prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((address[whole] ?? 0) & mask) === ((base[whole] ?? 0) & mask);
}

const COMPILED_V4 = compile(IPV4_RULES, 4);
const COMPILED_V6 = compile(IPV6_RULES, 6);

/** The most specific rule matching `ip` (every table has a /0 rule, so there always is one). */
export function matchRule(ip: IpAddress): AddressRule {
  let best: CompiledRule | undefined;
  for (const c of ip.family === 4 ? COMPILED_V4 : COMPILED_V6) {
    if ((best === undefined || c.prefix > best.prefix) && matchesPrefix(ip.bytes, c.bytes, c.prefix)) best = c;
  }
  if (best === undefined) throw new Error('address-policy: no default rule');
  return best.rule;
}

/** The IPv4 addresses an embedding carries (Teredo: server and de-obfuscated client). */
export function embeddedIpv4(ip: IpAddress, embedding: Embedding): IpAddress[] {
  const v4 = (bytes: Uint8Array): IpAddress => ({ family: 4, bytes, text: formatIpv4(bytes) });
  const b = ip.bytes;
  switch (embedding) {
    case 'ipv4-mapped':
    case 'nat64':
      return [v4(b.slice(12, 16))];
    case '6to4':
      return [v4(b.slice(2, 6))];
    case 'teredo':
      return [v4(b.slice(4, 8)), v4(b.slice(12, 16).map((x) => x ^ 0xff))];
  }
}

export interface AddressVerdict {
  readonly allowed: boolean;
  /** The address checked, canonical. */
  readonly address: IpAddress;
  /** What to connect to when allowed: the address itself, or the IPv4 inside an IPv4-mapped one. */
  readonly connectTo: IpAddress;
  readonly kind: AddressKind;
  /** The rule that decided (for IPv4-carrying forms: the IPv4 rule). */
  readonly rule: string;
  /** Set when an IPv4 address inside an IPv6 one decided. */
  readonly via?: Embedding;
  /** Short, for logs and refusal messages. */
  readonly reason: string;
}

export interface CheckAddressOptions {
  /** The host's own addresses (canonical text): refused even when public. */
  readonly hostAddresses?: ReadonlySet<string>;
}

/** Decide one address. A string that is not a strict IP literal is refused (kind `reserved`). */
export function checkAddress(input: IpAddress | string, options: CheckAddressOptions = {}): AddressVerdict {
  const address = typeof input === 'string' ? parseIp(input) : input;
  if (address === undefined) {
    const bad: IpAddress = { family: 4, bytes: new Uint8Array(4), text: '0.0.0.0' };
    return { allowed: false, address: bad, connectTo: bad, kind: 'reserved', rule: '-', reason: 'not an IP address' };
  }
  const r = matchRule(address);
  let verdict: AddressVerdict;
  if (r.action === 'embedded-ipv4' && r.embedding !== undefined) {
    const via = r.embedding;
    const inner = embeddedIpv4(address, via).map((v4) => ({ v4, rule: matchRule(v4) }));
    const refused = inner.find((i) => i.rule.action !== 'allow');
    const connectTo = via === 'ipv4-mapped' && inner[0] !== undefined ? inner[0].v4 : address;
    verdict =
      refused === undefined
        ? { allowed: true, address, connectTo, kind: 'public', rule: r.cidr, via, reason: `${via} public address` }
        : {
            allowed: false,
            address,
            connectTo,
            kind: refused.rule.kind,
            rule: refused.rule.cidr,
            via,
            reason: `${via} form of ${refused.v4.text}: ${refused.rule.description}`,
          };
  } else {
    verdict = {
      allowed: r.action === 'allow',
      address,
      connectTo: address,
      kind: r.kind,
      rule: r.cidr,
      reason: r.description,
    };
  }
  const own = options.hostAddresses;
  if (verdict.allowed && own !== undefined && (own.has(verdict.connectTo.text) || own.has(address.text))) {
    return { ...verdict, allowed: false, kind: 'host-own', rule: '-', reason: "one of the host's own addresses" };
  }
  return verdict;
}

// ---------------------------------------------------------------------------
// Host names

export type HostTarget =
  { readonly kind: 'ip'; readonly ip: IpAddress } | { readonly kind: 'name'; readonly name: string };

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/**
 * The host of a request (`[v6]`, a dotted quad, or a DNS name in ASCII).
 * A host whose last label is a number (`127.1`, `2130706433`, `0x7f.1`,
 * `0177.0.0.1`, `1.2.3.4.`) is an error: URL parsers and inet_aton read those
 * as IPv4 addresses, so they are neither names nor strict addresses here.
 */
export function parseHost(host: string): Parsed<HostTarget> {
  if (host.length === 0) return { ok: false, reason: 'empty host' };
  if (host.length > 254) return { ok: false, reason: 'host too long' };
  if (host.startsWith('[')) {
    if (!host.endsWith(']')) return { ok: false, reason: 'unterminated IPv6 literal' };
    const ip = parseIpv6(host.slice(1, -1));
    return ip === undefined ? { ok: false, reason: 'bad IPv6 literal' } : { ok: true, value: { kind: 'ip', ip } };
  }
  const v4 = parseIpv4(host);
  if (v4 !== undefined) return { ok: true, value: { kind: 'ip', ip: v4 } };
  if (host.includes(':')) return { ok: false, reason: 'IPv6 literal without brackets' };
  const name = host.toLowerCase().replace(/\.$/, '');
  const labels = name.split('.');
  const last = labels[labels.length - 1] ?? '';
  if (/^[0-9]+$/.test(last) || /^0x[0-9a-f]*$/.test(last)) {
    return { ok: false, reason: 'numeric host that is not a dotted-quad IPv4 address' };
  }
  if (name.length > 253 || !labels.every((l) => LABEL.test(l))) return { ok: false, reason: 'bad host name' };
  return { ok: true, value: { kind: 'name', name } };
}

/** Names (and name suffixes) that only mean something on a local network; never sent to DNS. */
export const LOCAL_NAME_SUFFIXES: readonly string[] = Object.freeze([
  'localhost',
  'localdomain',
  'local',
  'internal',
  'intranet',
  'lan',
  'home',
  'corp',
  'private',
  'home.arpa',
  'arpa',
  'invalid',
  'onion',
  'alt',
]);

export interface NameVerdict {
  readonly allowed: boolean;
  readonly reason: string;
}

/** `name` as returned by `parseHost` (lower case, no trailing dot). */
export function checkHostName(name: string): NameVerdict {
  if (!name.includes('.')) return { allowed: false, reason: 'single-label host name (a local network name)' };
  const suffix = LOCAL_NAME_SUFFIXES.find((s) => name === s || name.endsWith(`.${s}`));
  if (suffix !== undefined) return { allowed: false, reason: `local-only name (.${suffix})` };
  return { allowed: true, reason: 'public DNS name' };
}

export const DEFAULT_ALLOWED_PORTS: readonly number[] = Object.freeze([80, 443]);

export function isValidPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port <= 65535;
}

export function checkPort(port: number, allowed: ReadonlySet<number>): NameVerdict {
  return allowed.has(port)
    ? { allowed: true, reason: 'allowed port' }
    : { allowed: false, reason: `port ${port} is not allowed` };
}
