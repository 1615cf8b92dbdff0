import assert from 'node:assert/strict';
import { test } from 'node:test';
import { itemArguments, MAX_LAUNCH_ITEMS, parseLaunchItem, parseLaunchItems } from '../../electron/app/launch-items.js';

const CWD = '/home/ann/Downloads';
const packaged = (...args: string[]) =>
  parseLaunchItems(['/opt/Belljar/belljar', ...args], { cwd: CWD, defaultApp: false });

test('packaged: argv[0] is skipped, relative paths resolve against the launching directory', () => {
  const { requests, refused } = packaged('invoice.pdf', '../notes.txt', './a/./b/../c.png');
  assert.deepEqual(requests, [
    { kind: 'file', path: '/home/ann/Downloads/invoice.pdf' },
    { kind: 'file', path: '/home/ann/notes.txt' },
    { kind: 'file', path: '/home/ann/Downloads/a/c.png' },
  ]);
  assert.deepEqual(refused, []);
});

test('absolute paths stay as they are; the cwd of the *launching* process is used', () => {
  const { requests } = parseLaunchItems(['belljar', '/tmp/x.pdf', 'y.pdf'], { cwd: '/srv/other', defaultApp: false });
  assert.deepEqual(requests, [
    { kind: 'file', path: '/tmp/x.pdf' },
    { kind: 'file', path: '/srv/other/y.pdf' },
  ]);
});

test('`electron . FILE` (defaultApp): the app directory is skipped, even after switches', () => {
  const argv = ['/usr/lib/electron/electron', '--no-sandbox', '.', 'report.pdf'];
  assert.deepEqual(itemArguments(argv, true), ['report.pdf']);
  assert.deepEqual(itemArguments(['electron', '/path/to/app', 'a'], true), ['a']);
  assert.deepEqual(itemArguments(['electron', '.'], true), []);
});

test('Chromium and Electron switches are ignored, in either form', () => {
  const argv = ['belljar', '--original-process-start-time=1234', '--enable-logging', '-v', 'a.pdf', '--inspect=9229'];
  assert.deepEqual(itemArguments(argv, false), ['a.pdf']);
});

test('after `--`, arguments with leading dashes are items', () => {
  const { requests } = packaged('--', '-rf.pdf', '--weird name.pdf', '--');
  assert.deepEqual(requests, [
    { kind: 'file', path: '/home/ann/Downloads/-rf.pdf' },
    { kind: 'file', path: '/home/ann/Downloads/--weird name.pdf' },
    { kind: 'file', path: '/home/ann/Downloads/--' },
  ]);
});

test('the `open` verb is dropped only as the first item before `--`', () => {
  assert.deepEqual(itemArguments(['belljar', 'open', 'a.pdf'], false), ['a.pdf']);
  assert.deepEqual(itemArguments(['belljar', '--x', 'open', 'open'], false), ['open']);
  assert.deepEqual(itemArguments(['belljar', '--', 'open'], false), ['open']);
  assert.deepEqual(itemArguments(['belljar', 'a.pdf', 'open'], false), ['a.pdf', 'open']);
  assert.deepEqual(itemArguments(['electron', '.', 'open', 'x'], true), ['x']);
});

test('spaces, unicode and odd characters in file names survive', () => {
  const { requests } = packaged(
    'Rechnung März 2024.pdf',
    'фото 1.jpg',
    '报告.pdf',
    "it's #1 & 50%.pdf",
    'emoji 🎉.png',
  );
  assert.deepEqual(
    requests.map((r) => (r.kind === 'file' ? r.path : r.url)),
    [
      '/home/ann/Downloads/Rechnung März 2024.pdf',
      '/home/ann/Downloads/фото 1.jpg',
      '/home/ann/Downloads/报告.pdf',
      "/home/ann/Downloads/it's #1 & 50%.pdf",
      '/home/ann/Downloads/emoji 🎉.png',
    ],
  );
});

test('http and https URLs open as URLs (normalized); case-insensitive scheme', () => {
  const { requests, refused } = packaged('https://example.com/a b?q=1#x', 'HTTP://Example.COM', 'http://[::1]:8080/');
  assert.deepEqual(requests, [
    { kind: 'url', url: 'https://example.com/a%20b?q=1#x' },
    { kind: 'url', url: 'http://example.com/' },
    { kind: 'url', url: 'http://[::1]:8080/' },
  ]);
  assert.deepEqual(refused, []);
});

test('file: URLs become paths (percent-decoded); file URLs with a host are refused', () => {
  assert.deepEqual(parseLaunchItem('file:///home/ann/My%20File.pdf', CWD), {
    kind: 'file',
    path: '/home/ann/My File.pdf',
  });
  assert.deepEqual(parseLaunchItem('file://localhost/tmp/x.pdf', CWD), { kind: 'file', path: '/tmp/x.pdf' });
  const refused = parseLaunchItem('file://evil.example/share/x.pdf', CWD);
  assert.ok('reason' in refused && /local file/.test(refused.reason));
});

test('other schemes and junk are refused with a reason', () => {
  const { requests, refused } = packaged(
    'javascript:alert(1)',
    'data:text/html,<script>1</script>',
    'mailto:a@b.c',
    'ftp://example.com/x',
    'vbscript:x',
    '',
    'https://',
    'https://exa mple.com/',
    'notes:v2.pdf',
  );
  assert.deepEqual(requests, []);
  assert.equal(refused.length, 9);
  for (const item of refused) assert.ok(item.reason.length > 0, `reason for ${item.argument}`);
  assert.match(refused[0]?.reason ?? '', /"javascript:" links cannot be opened/);
  assert.match(refused[5]?.reason ?? '', /empty/);
  // A file whose name looks like a scheme is reachable as ./name.
  assert.deepEqual(packaged('./notes:v2.pdf').requests, [{ kind: 'file', path: '/home/ann/Downloads/notes:v2.pdf' }]);
});

test('contract limits apply: over-long paths and URLs are refused, not truncated', () => {
  const longPath = `${'a/'.repeat(2100)}x.pdf`;
  const longUrl = `https://example.com/${'a'.repeat(9000)}`;
  const { requests, refused } = packaged(longPath, longUrl, 'nul\0byte');
  assert.deepEqual(requests, []);
  assert.equal(refused.length, 3);
  assert.ok(refused.every((item) => item.argument.length <= 201));
});

test('a relative path with an unknown (non-absolute) launching directory is refused', () => {
  const result = parseLaunchItems(['belljar', 'a.pdf', '/abs.pdf'], { cwd: 'relative/dir', defaultApp: false });
  assert.deepEqual(result.requests, [{ kind: 'file', path: '/abs.pdf' }]);
  assert.match(result.refused[0]?.reason ?? '', /launching directory/);
});

test(`at most ${MAX_LAUNCH_ITEMS} items per launch; the rest are refused`, () => {
  const names = Array.from({ length: MAX_LAUNCH_ITEMS + 3 }, (_, i) => `f${i}.pdf`);
  const { requests, refused } = packaged(...names);
  assert.equal(requests.length, MAX_LAUNCH_ITEMS);
  assert.equal(refused.length, 3);
  assert.match(refused[0]?.reason ?? '', /more than/);
});

test('no items: nothing to open', () => {
  assert.deepEqual(packaged(), { requests: [], refused: [] });
  assert.deepEqual(parseLaunchItems([], { cwd: CWD, defaultApp: false }), { requests: [], refused: [] });
});
