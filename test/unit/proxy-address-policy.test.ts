/**
 * The egress proxy's pure parts: the address policy (every refused class, the
 * IPv4-carrying IPv6 forms of each IPv4 class, a few public addresses), strict
 * IP and host parsing, host-name and port policy, request-target parsing and
 * the bounded decision log. No sockets, no DNS.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  IPV4_RULES,
  IPV6_RULES,
  checkAddress,
  checkHostName,
  checkPort,
  embeddedIpv4,
  formatIpv6,
  matchRule,
  parseHost,
  parseIp,
  parseIpv4,
  type AddressKind,
  type Embedding,
} from '../../vmm/proxy/address-policy.js';
import { DecisionLog, MAX_FIELD, sanitize } from '../../vmm/proxy/decision-log.js';
import type { ProxyDecision } from '../../vmm/proxy/decision-log.js';
import {
  hostHeaderMatches,
  parseAbsoluteHttpUrl,
  parseAuthority,
  parseConnectTarget,
} from '../../vmm/proxy/request-target.js';

/** One or more samples of every refused IPv4 class. */
const REFUSED_V4: ReadonlyArray<readonly [string, AddressKind]> = [
  ['0.0.0.0', 'unspecified'],
  ['0.1.2.3', 'unspecified'],
  ['10.0.0.1', 'private'],
  ['10.255.255.255', 'private'],
  ['172.16.0.1', 'private'],
  ['172.31.255.254', 'private'],
  ['192.168.0.1', 'private'],
  ['192.168.255.255', 'private'],
  ['127.0.0.1', 'loopback'],
  ['127.255.255.254', 'loopback'],
  ['169.254.0.1', 'link-local'],
  ['169.254.255.254', 'link-local'],
  ['100.64.0.1', 'cgnat'],
  ['100.127.255.254', 'cgnat'],
  ['224.0.0.1', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['255.255.255.255', 'broadcast'],
  ['240.0.0.1', 'reserved'],
  ['254.1.2.3', 'reserved'],
  ['192.0.0.8', 'reserved'],
  ['192.88.99.1', 'reserved'],
  ['192.0.2.1', 'documentation'],
  ['198.51.100.7', 'documentation'],
  ['203.0.113.9', 'documentation'],
  ['198.18.0.1', 'benchmark'],
  ['198.19.255.254', 'benchmark'],
  ['169.254.169.254', 'metadata'],
  ['169.254.170.2', 'metadata'],
  ['169.254.169.253', 'metadata'],
  ['169.254.169.123', 'metadata'],
  ['100.100.100.200', 'metadata'],
  ['168.63.129.16', 'metadata'],
  ['192.0.0.192', 'metadata'],
];

const REFUSED_V6: ReadonlyArray<readonly [string, AddressKind]> = [
  ['::', 'unspecified'],
  ['::1', 'loopback'],
  ['0:0:0:0:0:0:0:1', 'loopback'],
  ['fe80::1', 'link-local'],
  ['febf:ffff::1', 'link-local'],
  ['fc00::1', 'ula'],
  ['fd12:3456:789a::1', 'ula'],
  ['ff02::1', 'multicast'],
  ['ff0e::1', 'multicast'],
  ['fec0::1', 'site-local'],
  ['2001:db8::1', 'documentation'],
  ['2001:db8:ffff::1', 'documentation'],
  ['3fff::1', 'documentation'],
  ['2001:2::1', 'benchmark'],
  ['2001:10::1', 'reserved'],
  ['100::1', 'reserved'],
  ['::ffff:0:7f00:1', 'reserved'],
  ['fd00:ec2::254', 'metadata'],
  ['fd00:ec2::253', 'metadata'],
  ['fd20:ce::254', 'metadata'],
  ['64:ff9b:1::1', 'nat64-local'],
  ['::7f00:1', 'ipv4-compatible'],
  ['::8.8.8.8', 'ipv4-compatible'],
  ['::2', 'ipv4-compatible'],
  ['1::1', 'not-global-unicast'],
  ['4000::1', 'not-global-unicast'],
  ['5f00::1', 'not-global-unicast'],
  ['e000::1', 'not-global-unicast'],
];

const PUBLIC: ReadonlyArray<readonly [string, string]> = [
  // [address, the address to connect to]
  ['8.8.8.8', '8.8.8.8'],
  ['1.1.1.1', '1.1.1.1'],
  ['93.184.216.34', '93.184.216.34'],
  ['9.255.255.255', '9.255.255.255'],
  ['11.0.0.0', '11.0.0.0'],
  ['100.63.255.255', '100.63.255.255'],
  ['100.128.0.0', '100.128.0.0'],
  ['126.255.255.255', '126.255.255.255'],
  ['128.0.0.0', '128.0.0.0'],
  ['169.253.255.255', '169.253.255.255'],
  ['172.15.255.255', '172.15.255.255'],
  ['172.32.0.0', '172.32.0.0'],
  ['192.0.3.1', '192.0.3.1'],
  ['192.167.255.255', '192.167.255.255'],
  ['198.17.255.255', '198.17.255.255'],
  ['198.20.0.0', '198.20.0.0'],
  ['223.255.255.255', '223.255.255.255'],
  ['2606:4700:4700::1111', '2606:4700:4700::1111'],
  ['2001:4860:4860::8888', '2001:4860:4860::8888'],
  ['2a00:1450:4001:82b::200e', '2a00:1450:4001:82b::200e'],
  ['::ffff:8.8.8.8', '8.8.8.8'],
  ['::FFFF:808:808', '8.8.8.8'],
  ['64:ff9b::8.8.8.8', '64:ff9b::808:808'],
  ['2002:808:808::1', '2002:808:808::1'],
];

function v6FromBytes(bytes: number[]): string {
  return formatIpv6(Uint8Array.from(bytes));
}

/** The IPv4-carrying IPv6 forms of an IPv4 address. */
function embeddedForms(v4: string): Array<readonly [string, Embedding]> {
  const ip = parseIpv4(v4);
  assert.ok(ip, v4);
  const [a = 0, b = 0, c = 0, d = 0] = ip.bytes;
  const zeros = (n: number): number[] => Array<number>(n).fill(0);
  return [
    [`::ffff:${v4}`, 'ipv4-mapped'],
    [v6FromBytes([...zeros(10), 0xff, 0xff, a, b, c, d]), 'ipv4-mapped'],
    [`64:ff9b::${v4}`, 'nat64'],
    [v6FromBytes([0, 0x64, 0xff, 0x9b, ...zeros(8), a, b, c, d]), 'nat64'],
    [v6FromBytes([0x20, 0x02, a, b, c, d, ...zeros(9), 1]), '6to4'],
    // Teredo: the IPv4 as server, then (obfuscated) as client behind a public server.
    [v6FromBytes([0x20, 0x01, 0, 0, a, b, c, d, ...zeros(8)]), 'teredo'],
    [v6FromBytes([0x20, 0x01, 0, 0, 8, 8, 8, 8, 0, 0, 0, 0, a ^ 0xff, b ^ 0xff, c ^ 0xff, d ^ 0xff]), 'teredo'],
  ];
}

test('every refused IPv4 class is refused, with its kind', () => {
  for (const [address, kind] of REFUSED_V4) {
    const v = checkAddress(address);
    assert.equal(v.allowed, false, address);
    assert.equal(v.kind, kind, address);
    assert.equal(v.via, undefined, address);
  }
});

test('every refused IPv6 class is refused, with its kind', () => {
  for (const [address, kind] of REFUSED_V6) {
    const v = checkAddress(address);
    assert.equal(v.allowed, false, address);
    assert.equal(v.kind, kind, address);
  }
});

test('the IPv4-mapped, NAT64, 6to4 and Teredo forms of every refused IPv4 class are refused', () => {
  for (const [v4, kind] of REFUSED_V4) {
    for (const [form, via] of embeddedForms(v4)) {
      const v = checkAddress(form);
      assert.equal(v.allowed, false, `${form} (${via} of ${v4})`);
      assert.equal(v.kind, kind, form);
      assert.equal(v.via, via, form);
    }
  }
});

test('public addresses are allowed; IPv4-mapped ones connect over IPv4', () => {
  for (const [address, connectTo] of PUBLIC) {
    const v = checkAddress(address);
    assert.equal(v.allowed, true, `${address}: ${v.reason}`);
    assert.equal(v.kind, 'public', address);
    assert.equal(v.connectTo.text, connectTo, address);
  }
  const teredo = v6FromBytes([0x20, 0x01, 0, 0, 8, 8, 8, 8, 0, 0, 0, 0, 0xfe, 0xfe, 0xfe, 0xfe]);
  assert.equal(checkAddress(teredo).allowed, true, 'Teredo with public server and client 1.1.1.1');
});

test('the most specific rule decides (metadata inside link-local, Teredo inside 2001::/23)', () => {
  assert.equal(matchRule(parseIp('169.254.169.254') ?? assert.fail()).kind, 'metadata');
  assert.equal(matchRule(parseIp('169.254.169.1') ?? assert.fail()).kind, 'link-local');
  assert.equal(matchRule(parseIp('2001::1') ?? assert.fail()).embedding, 'teredo');
  assert.equal(matchRule(parseIp('2001:1::1') ?? assert.fail()).kind, 'reserved');
  const teredo = parseIp('2001:0:102:304::fefd:fcfb') ?? assert.fail();
  assert.deepEqual(
    embeddedIpv4(teredo, 'teredo').map((i) => i.text),
    ['1.2.3.4', '1.2.3.4'],
  );
});

test('the rule tables have a default rule and only well-formed CIDRs', () => {
  for (const [rules, family] of [
    [IPV4_RULES, 4],
    [IPV6_RULES, 6],
  ] as const) {
    assert.ok(rules.some((r) => r.cidr.endsWith('/0')));
    for (const r of rules) {
      const [base = '', prefix = ''] = r.cidr.split('/');
      assert.equal(parseIp(base)?.family, family, r.cidr);
      assert.match(prefix, /^[0-9]+$/, r.cidr);
      assert.equal(r.action === 'embedded-ipv4', r.embedding !== undefined, r.cidr);
    }
  }
});

test("the host's own addresses are refused even when public", () => {
  const own = new Set(['93.184.216.34', '2606:4700::1']);
  assert.equal(checkAddress('93.184.216.34', { hostAddresses: own }).kind, 'host-own');
  assert.equal(checkAddress('::ffff:93.184.216.34', { hostAddresses: own }).kind, 'host-own');
  assert.equal(checkAddress('2606:4700:0::1', { hostAddresses: own }).kind, 'host-own');
  assert.equal(checkAddress('93.184.216.35', { hostAddresses: own }).allowed, true);
});

test('IP parsing is strict: no octal, hex, short, single-number or zone forms', () => {
  const bad = [
    '0177.0.0.1',
    '2130706433',
    '0x7f.1',
    '0x7f000001',
    '0x7f.0x0.0x0.0x1',
    '127.1',
    '127.0.1',
    '1.2.3.04',
    '01.2.3.4',
    '1.2.3.4.',
    ' 1.2.3.4',
    '1.2.3.4 ',
    '256.1.1.1',
    '1.2.3',
    '1.2.3.4.5',
    '',
    '１.２.３.４',
    '127.0.0.1\0',
    'fe80::1%eth0',
    'fe80::1%1',
    '[::1]',
    '::ffff:01.2.3.4',
    '::ffff:127.1',
    '1::2::3',
    ':::1',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7',
    'g::1',
    '12345::1',
    'localhost',
  ];
  for (const text of bad) {
    assert.equal(parseIp(text), undefined, JSON.stringify(text));
    assert.equal(checkAddress(text).allowed, false, JSON.stringify(text));
  }
});

test('IPv6 text is canonical (RFC 5952)', () => {
  const cases: ReadonlyArray<readonly [string, string]> = [
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['1:0:0:1:0:0:0:1', '1:0:0:1::1'],
    ['1:0:0:1:1:0:0:1', '1::1:1:0:0:1'],
    ['1:0:1:0:1:0:1:0', '1:0:1:0:1:0:1:0'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['::ffff:127.0.0.1', '::ffff:7f00:1'],
    ['1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:102:304'],
    ['fe80::', 'fe80::'],
  ];
  for (const [input, canonical] of cases) assert.equal(parseIp(input)?.text, canonical, input);
});

test('hosts: names are lower-cased; numeric forms that are not a dotted quad are errors, never names', () => {
  const name = (h: string): string | undefined => {
    const p = parseHost(h);
    return p.ok && p.value.kind === 'name' ? p.value.name : undefined;
  };
  assert.equal(name('Example.COM'), 'example.com');
  assert.equal(name('example.com.'), 'example.com');
  assert.equal(name('ex_ample.example.com'), 'ex_ample.example.com');
  assert.equal(name('xn--nicode-2ya.example'), 'xn--nicode-2ya.example');
  assert.equal(name('0x.example.com'), '0x.example.com');
  const ip = parseHost('[::FFFF:7f00:1]');
  assert.ok(ip.ok && ip.value.kind === 'ip' && ip.value.ip.text === '::ffff:7f00:1');
  const v4 = parseHost('8.8.8.8');
  assert.ok(v4.ok && v4.value.kind === 'ip' && v4.value.ip.family === 4);
  for (const bad of [
    '0177.0.0.1',
    '2130706433',
    '0x7f.1',
    '0x7f000001',
    '127.1',
    '127.0.0.1.',
    '1.2.3.4.5',
    'foo.0x1',
    'example.123',
    '::1',
    '[::1',
    '[fe80::1%25eth0]',
    '[127.0.0.1]',
    '',
    'exa mple.com',
    '-bad.example.com',
    'bad-.example.com',
    'a..example.com',
    `${'a'.repeat(64)}.example.com`,
    `${'a.'.repeat(127)}com`,
    'ünïcode.example',
    'example.com%00',
    'user@example.com',
  ]) {
    assert.equal(parseHost(bad).ok, false, JSON.stringify(bad));
  }
});

test('local-network names are refused before any lookup', () => {
  for (const n of [
    'localhost',
    'foo.localhost',
    'intranet',
    'printer.local',
    'metadata.google.internal',
    'router.home.arpa',
    'nas.lan',
    'box.localdomain',
    'x.onion',
    '1.0.0.127.in-addr.arpa',
  ]) {
    assert.equal(checkHostName(n).allowed, false, n);
  }
  for (const n of ['example.com', 'localhost.example.com', 'local.example.org', 'a.b.c.d.example']) {
    assert.equal(checkHostName(n).allowed, true, n);
  }
});

test('ports: only the allowed set', () => {
  const allowed = new Set([80, 443]);
  assert.equal(checkPort(443, allowed).allowed, true);
  assert.equal(checkPort(80, allowed).allowed, true);
  for (const p of [22, 25, 8080, 3128, 0, 65535]) assert.equal(checkPort(p, allowed).allowed, false, String(p));
});

test('CONNECT targets: host:port, strictly', () => {
  const ok = (t: string): string => {
    const p = parseConnectTarget(t);
    assert.ok(p.ok, `${t}: ${p.ok ? '' : p.reason}`);
    return `${p.value.hostText}|${p.value.port}`;
  };
  assert.equal(ok('example.com:443'), 'example.com|443');
  assert.equal(ok('EXAMPLE.com:443'), 'example.com|443');
  assert.equal(ok('[2001:DB8::1]:443'), '[2001:db8::1]|443');
  assert.equal(ok('93.184.216.34:80'), '93.184.216.34|80');
  assert.equal(ok('example.com:00443'), 'example.com|443');
  for (const bad of [
    'example.com',
    'example.com:',
    'example.com:0',
    'example.com:65536',
    'example.com:+443',
    'example.com:0x1bb',
    'example.com:443/path',
    'user@example.com:443',
    '[::1:443',
    '[::1]443',
    '::1:443',
    '127.1:443',
    '2130706433:443',
    '0x7f.1:443',
    '0177.0.0.1:443',
    '[fe80::1%eth0]:443',
    ':443',
    '',
  ]) {
    assert.equal(parseConnectTarget(bad).ok, false, JSON.stringify(bad));
  }
});

test('absolute-form http URLs: authority, default port 80, origin-form path', () => {
  const ok = (u: string): string => {
    const p = parseAbsoluteHttpUrl(u);
    assert.ok(p.ok, `${u}: ${p.ok ? '' : p.reason}`);
    return `${p.value.hostText}|${p.value.port}|${p.value.path}`;
  };
  assert.equal(ok('http://example.com'), 'example.com|80|/');
  assert.equal(ok('http://example.com/'), 'example.com|80|/');
  assert.equal(ok('HTTP://Example.com:8080/a/b?c=d'), 'example.com|8080|/a/b?c=d');
  assert.equal(ok('http://example.com?q=1'), 'example.com|80|/?q=1');
  assert.equal(ok('http://[2606:4700::1]/x'), '[2606:4700::1]|80|/x');
  for (const bad of [
    '/',
    '/index.html',
    'example.com/',
    'https://example.com/',
    'ftp://example.com/',
    'ws://example.com/',
    'http://user:pw@example.com/',
    'http://example.com/#frag',
    'http:///path',
    'http://[::1/',
    'http://2130706433/',
    'http://0x7f.1/',
    'http://example.com:99999/',
  ]) {
    assert.equal(parseAbsoluteHttpUrl(bad).ok, false, bad);
  }
});

test('Host header matching accepts an implied default port and ignores case', () => {
  const target = parseAuthority('example.com', 80);
  assert.ok(target.ok);
  for (const h of ['example.com', 'Example.COM', 'example.com:80', ' example.com ']) {
    assert.equal(hostHeaderMatches(h, target.value, 80), true, h);
  }
  for (const h of ['example.com:8080', 'other.example.com', '', 'example.com:80:80']) {
    assert.equal(hostHeaderMatches(h, target.value, 80), false, h);
  }
});

test('decision log: sanitized fields, rate-limited callback with a suppressed count, bounded ring', () => {
  let now = 1_000;
  const delivered: ProxyDecision[] = [];
  const log = new DecisionLog((d) => delivered.push(d), { burst: 2, perSecond: 1, ringSize: 3, now: () => now });
  const entry = (reason: string): void => {
    log.record({ connection: 1, request: 'http', target: 'a\r\nb', outcome: 'refused', status: 403, reason });
  };
  entry('one');
  entry('two');
  entry('three');
  entry('four');
  assert.deepEqual(
    delivered.map((d) => d.reason),
    ['one', 'two'],
  );
  now += 1_000;
  entry('five');
  assert.equal(delivered.length, 3);
  assert.equal(delivered[2]?.reason, 'five');
  assert.equal(delivered[2]?.suppressed, 2);
  assert.equal(delivered[0]?.target, 'a??b');
  assert.deepEqual(
    log.recent().map((d) => d.reason),
    ['three', 'four', 'five'],
  );
  assert.equal(sanitize('x'.repeat(10_000)).length, MAX_FIELD);
  const throwing = new DecisionLog(() => {
    throw new Error('sink failed');
  });
  throwing.record({ connection: 1, request: 'http', target: '-', outcome: 'refused', status: 403, reason: 'x' });
});
