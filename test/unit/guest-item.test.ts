import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ITEM_DISK_MAGIC,
  ITEM_HEADER_BYTES,
  SECTOR_BYTES,
  classifyItem,
  classifyUrl,
  checkItemSize,
  guestFileName,
  itemDiskImage,
  looksLikeText,
  readItemFile,
  type AcceptedItem,
} from '../../guest-images/item.js';

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]);
const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16]);
const PDF = Buffer.from('%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n');
const ELF = Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

function accepted(name: string, bytes: Uint8Array): AcceptedItem {
  const d = classifyItem(name, bytes);
  assert.ok(d.ok, `expected ${name} to be accepted`);
  return d;
}

test('binary formats are recognised by content, whatever the name', () => {
  assert.equal(accepted('a.pdf', PDF).kind.viewer, 'pdf');
  assert.equal(accepted('a.png', PNG).kind.mime, 'image/png');
  assert.equal(accepted('a.jpeg', JPEG).kind.ext, 'jpg');
  assert.equal(accepted('a.gif', Buffer.from('GIF89a\x01\x00')).kind.mime, 'image/gif');
  assert.equal(accepted('a.webp', Buffer.from('RIFF\x10\x00\x00\x00WEBPVP8 ')).kind.mime, 'image/webp');
  // A PDF header after some junk still counts (as PDF readers allow).
  assert.equal(accepted('x', Buffer.concat([Buffer.from('junk\n'), PDF])).kind.viewer, 'pdf');
});

test('a lying extension opens as what the content is, with a note', () => {
  const pngAsPdf = accepted('invoice.pdf', PNG);
  assert.equal(pngAsPdf.kind.viewer, 'image');
  assert.equal(pngAsPdf.guestName, 'invoice.png');
  assert.match(pngAsPdf.note ?? '', /\.pdf.*PNG/);
  // HTML in a .pdf/.jpg name shows as text: it is never rendered as a page.
  const htmlAsJpg = accepted('photo.jpg', Buffer.from('<html><script>alert(1)</script></html>'));
  assert.equal(htmlAsJpg.kind.viewer, 'text');
  assert.equal(htmlAsJpg.guestName, 'photo.txt');
  // HTML renders only when the name says HTML and the content is text.
  assert.equal(accepted('page.htm', Buffer.from('<p>hi</p>')).kind.viewer, 'html');
  assert.equal(accepted('notes', Buffer.from('<p>hi</p>')).kind.viewer, 'text');
  assert.equal(
    accepted('d.svg', Buffer.from('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>')).kind.viewer,
    'image',
  );
  assert.equal(accepted('d.svg', Buffer.from('not an svg')).kind.viewer, 'text');
  assert.equal(accepted('readme.txt', Buffer.from('hello')).note, undefined);
});

test('unknown binary content is refused, not opened', () => {
  const d = classifyItem('program.pdf', ELF);
  assert.equal(d.ok, false);
  assert.match(d.ok ? '' : d.reason, /not a type a sandbox shows.*\.pdf/);
  assert.equal(classifyItem('x.txt', Buffer.from([0x61, 0x00, 0x62])).ok, false);
  assert.equal(classifyItem('latin1.txt', Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x21])).ok, false);
});

test('empty and oversized items are refused with clear messages', () => {
  const empty = classifyItem('a.pdf', new Uint8Array(0));
  assert.equal(empty.ok, false);
  assert.match(empty.ok ? '' : empty.reason, /empty/);
  const big = checkItemSize(200 * 1024 * 1024, 128 * 1024 * 1024);
  assert.match(big?.reason ?? '', /200 MB, larger than the 128 MB/);
  assert.equal(checkItemSize(1), undefined);
  assert.equal(classifyItem('a.txt', Buffer.from('abcd'), 3).ok, false);
});

test('guest file names are safe: no paths, no leading dashes or dots, canonical extension', () => {
  assert.equal(guestFileName('../../etc/passwd', 'txt'), 'passwd.txt');
  assert.equal(guestFileName('C:\\Users\\x\\..\\evil.pdf', 'pdf'), 'evil.pdf');
  assert.equal(guestFileName('--help.pdf', 'pdf'), 'help.pdf');
  assert.equal(guestFileName('-rf .pdf', 'pdf'), 'rf.pdf');
  assert.equal(guestFileName('.bashrc', 'txt'), 'bashrc.txt');
  assert.equal(guestFileName('my invoice (2).PDF', 'pdf'), 'my invoice (2).pdf');
  assert.equal(guestFileName('Rechnung für März.pdf', 'pdf'), 'Rechnung für März.pdf');
  assert.equal(guestFileName('請求書.pdf', 'pdf'), '請求書.pdf');
  // Decomposed input is normalised to NFC.
  assert.equal(guestFileName('Cafe\u0301.txt', 'txt'), 'Caf\u00e9.txt');
  assert.equal(guestFileName('a\nb\u0000c$`;|&.txt', 'txt'), 'a_b_c_____.txt');
  assert.equal(guestFileName('a.tar.gz', 'txt'), 'a.tar.gz.txt');
  assert.equal(guestFileName('...', 'txt'), 'item.txt');
  assert.equal(guestFileName('', 'pdf'), 'item.pdf');
  assert.equal(guestFileName('x'.repeat(300), 'txt').length, 80 + 4);
  assert.equal(guestFileName('🙂'.repeat(100), 'txt'), `${'_'.repeat(80)}.txt`.replace(/^_+\./, 'item.'));
});

test('the item disk holds a header block and the bytes, sector-padded', () => {
  const bytes = Buffer.from('%PDF-1.4 hello');
  const item = accepted('-x y.pdf', bytes);
  const disk = itemDiskImage(item, bytes);
  assert.equal(disk.length, ITEM_HEADER_BYTES + SECTOR_BYTES);
  assert.equal(disk.length % SECTOR_BYTES, 0);
  const header = disk.subarray(0, ITEM_HEADER_BYTES).toString('utf8').replace(/\0+$/, '');
  const lines = header.trimEnd().split('\n');
  assert.equal(lines[0], ITEM_DISK_MAGIC);
  assert.deepEqual(lines.slice(1, 5), ['size=14', 'name=x y.pdf', 'viewer=pdf', 'mime=application/pdf']);
  assert.match(lines[5] ?? '', /^sha256=[0-9a-f]{64}$/);
  assert.deepEqual(disk.subarray(ITEM_HEADER_BYTES, ITEM_HEADER_BYTES + bytes.length), bytes);
  assert.ok(disk.subarray(ITEM_HEADER_BYTES + bytes.length).every((b) => b === 0));
});

test('URLs: http and https only, no credentials', () => {
  assert.deepEqual(classifyUrl('https://example.org/a b'), { ok: true, url: 'https://example.org/a%20b' });
  assert.equal(classifyUrl('file:///etc/passwd').ok, false);
  assert.equal(classifyUrl('javascript:alert(1)').ok, false);
  assert.equal(classifyUrl('https://user:pw@example.org/').ok, false);
  assert.equal(classifyUrl('not a url').ok, false);
  assert.equal(classifyUrl(`https://e.org/${'a'.repeat(9000)}`).ok, false);
});

test('text detection accepts UTF-8 and rejects binary', () => {
  assert.ok(looksLikeText(Buffer.from('\ufeffplain text\r\n\ttabs')));
  assert.ok(looksLikeText(Buffer.from('Grüße 👋')));
  assert.ok(!looksLikeText(Buffer.from([0xff, 0xfe, 0x41, 0x00])));
  // A multi-byte character cut at the end of the 64 KiB sample is not an error.
  const long = Buffer.from(`${'a'.repeat(64 * 1024 - 1)}é${'b'.repeat(10)}`);
  assert.ok(looksLikeText(long));
});

test('readItemFile refuses huge and special files before reading them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'belljar-item-'));
  try {
    const small = join(dir, 'a b.txt');
    writeFileSync(small, 'hello');
    const ok = readItemFile(small);
    assert.ok(ok.ok);
    assert.equal(ok.ok && ok.bytes.toString(), 'hello');
    const sparse = join(dir, 'huge.pdf');
    // A sparse 1 GiB file: refused from its size alone.
    writeFileSync(sparse, '');
    truncateSync(sparse, 1024 * 1024 * 1024);
    const huge = readItemFile(sparse);
    assert.equal(huge.ok, false);
    assert.match(huge.ok ? '' : huge.reason, /1024 MB, larger than/);
    mkdirSync(join(dir, 'd'));
    assert.equal(readItemFile(join(dir, 'd')).ok, false);
    assert.equal(readItemFile(join(dir, 'missing')).ok, false);
    const empty = join(dir, 'empty.pdf');
    writeFileSync(empty, '');
    assert.match(((r) => (r.ok ? '' : r.reason))(readItemFile(empty)), /empty/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
