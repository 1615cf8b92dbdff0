/**
 * Host-side handling of what the user opens, before any VM boots: size limits,
 * type detection from the content (never from the name alone), the viewer
 * that will show it, a safe file name for inside the guest, and the item disk
 * — a raw read-only virtio-blk image holding only that file.
 *
 * Item disk format (version 1), written without root and without any tool:
 *   bytes 0..4095   ASCII/UTF-8 header, NUL-padded:
 *                     BELLJAR-ITEM 1\n size=<bytes>\n name=<guest name>\n
 *                     viewer=<pdf|image|text|html>\n mime=<type>\n sha256=<hex>\n
 *   bytes 4096..    the file's bytes, zero-padded to a 512-byte sector
 * The guest parses no filesystem: the agent reads the header, copies `size`
 * bytes into a tmpfs file and hands that file to the viewer.
 *
 * Pure except for `readItemFile`, which reads from disk.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { MAX_ITEM_BYTES } from './config.js';

export const ITEM_DISK_MAGIC = 'BELLJAR-ITEM 1';
export const ITEM_HEADER_BYTES = 4096;
export const SECTOR_BYTES = 512;
/** Longest guest file name, in characters, before the extension. */
export const MAX_NAME_CHARS = 80;

/** The guest's viewers. A second viewer (office documents) adds a member here. */
export type Viewer = 'pdf' | 'image' | 'text' | 'html';

export interface ItemKind {
  readonly viewer: Viewer;
  readonly mime: string;
  /** Canonical extension the guest file gets (Chromium picks its viewer by it for file:// URLs). */
  readonly ext: string;
  /** What was detected, for messages (e.g. `png`, `pdf`, `utf-8 text`). */
  readonly detected: string;
}

export interface AcceptedItem {
  readonly ok: true;
  readonly kind: ItemKind;
  /** Name of the file inside the guest: sanitised original name + canonical extension. */
  readonly guestName: string;
  /** Set when the name's extension disagrees with the content. */
  readonly note?: string;
}

export interface RefusedItem {
  readonly ok: false;
  /** A message for the user: what is wrong, and that nothing was opened. */
  readonly reason: string;
}

export type ItemDecision = AcceptedItem | RefusedItem;

const KINDS = {
  pdf: { viewer: 'pdf', mime: 'application/pdf', ext: 'pdf', detected: 'PDF' },
  png: { viewer: 'image', mime: 'image/png', ext: 'png', detected: 'PNG image' },
  jpeg: { viewer: 'image', mime: 'image/jpeg', ext: 'jpg', detected: 'JPEG image' },
  gif: { viewer: 'image', mime: 'image/gif', ext: 'gif', detected: 'GIF image' },
  webp: { viewer: 'image', mime: 'image/webp', ext: 'webp', detected: 'WebP image' },
  svg: { viewer: 'image', mime: 'image/svg+xml', ext: 'svg', detected: 'SVG image' },
  html: { viewer: 'html', mime: 'text/html', ext: 'html', detected: 'HTML' },
  text: { viewer: 'text', mime: 'text/plain', ext: 'txt', detected: 'text' },
} as const satisfies Record<string, ItemKind>;

/** Extensions whose claim we believe when the content is text. */
const HTML_EXTENSIONS = new Set(['html', 'htm', 'xhtml']);
/** Known extensions, stripped from the original name before the canonical one is added. */
const KNOWN_EXTENSIONS = new Set([
  'pdf',
  'png',
  'jpg',
  'jpeg',
  'jpe',
  'gif',
  'webp',
  'svg',
  'html',
  'htm',
  'xhtml',
  'txt',
  'text',
]);
/** The kind each known extension claims, to notice a lying one. */
const CLAIMED: Readonly<Record<string, string>> = {
  pdf: 'pdf',
  png: 'png',
  jpg: 'jpeg',
  jpeg: 'jpeg',
  jpe: 'jpeg',
  gif: 'gif',
  webp: 'webp',
  svg: 'svg',
  html: 'html',
  htm: 'html',
  xhtml: 'html',
  txt: 'text',
  text: 'text',
};

function startsWith(bytes: Uint8Array, signature: readonly number[], offset = 0): boolean {
  if (bytes.length < offset + signature.length) return false;
  return signature.every((b, i) => bytes[offset + i] === b);
}

function ascii(text: string): number[] {
  return [...text].map((c) => c.charCodeAt(0));
}

/** Binary formats recognised by their magic numbers, whatever the name says. */
function sniffBinary(bytes: Uint8Array): keyof typeof KINDS | undefined {
  // PDF readers accept the header anywhere in the first KiB (Acrobat's rule); so does PDFium.
  const head = Buffer.from(bytes.subarray(0, 1024)).toString('latin1');
  if (head.includes('%PDF-')) return 'pdf';
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'png';
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return 'jpeg';
  if (startsWith(bytes, ascii('GIF87a')) || startsWith(bytes, ascii('GIF89a'))) return 'gif';
  if (startsWith(bytes, ascii('RIFF')) && startsWith(bytes, ascii('WEBP'), 8)) return 'webp';
  return undefined;
}

/** Text means: valid UTF-8 (a BOM is fine) with no NUL and few control bytes. */
export function looksLikeText(bytes: Uint8Array): boolean {
  const sample = bytes.subarray(0, 64 * 1024);
  let controls = 0;
  for (const b of sample) {
    if (b === 0) return false;
    if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d && b !== 0x0c && b !== 0x1b) controls++;
  }
  if (controls > sample.length / 100) return false;
  try {
    // A sample may cut a multi-byte sequence at its end: check whole file when small, else trim.
    const whole = bytes.length <= sample.length;
    let end = sample.length;
    if (!whole) while (end > 0 && ((sample[end - 1] ?? 0) & 0xc0) === 0x80) end--;
    if (!whole && end > 0 && (sample[end - 1] ?? 0) >= 0xc0) end--;
    new TextDecoder('utf-8', { fatal: true }).decode(sample.subarray(0, end));
    return true;
  } catch {
    return false;
  }
}

/** The extension of a name (lower case, without the dot), or '' when none. */
export function extensionOf(name: string): string {
  const base = baseName(name);
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(dot + 1).toLowerCase() : '';
}

/** The last path component, for `/` and `\` separators alike. */
export function baseName(name: string): string {
  const parts = name.split(/[/\\]/);
  return parts[parts.length - 1] ?? '';
}

/**
 * A file name safe inside the guest and in a file:// URL: the original's last
 * component, NFC-normalised, letters and digits of any script kept, other
 * characters but ` ._-()+,` replaced by `_`, no leading dots, dashes or
 * spaces, at most MAX_NAME_CHARS characters, then the canonical extension.
 */
export function guestFileName(original: string, ext: string): string {
  let base = baseName(original).normalize('NFC');
  const dot = base.lastIndexOf('.');
  if (dot > 0 && KNOWN_EXTENSIONS.has(base.slice(dot + 1).toLowerCase())) base = base.slice(0, dot);
  base = base.replace(/[^\p{L}\p{N}\p{M} ._\-()+,]/gu, '_');
  base = base.replace(/^[\s.-]+/u, '').replace(/[\s.]+$/u, '');
  base = [...base].slice(0, MAX_NAME_CHARS).join('');
  if (base === '' || /^_+$/.test(base)) base = 'item';
  return `${base}.${ext}`;
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MB`;
}

/** The size check alone, so a caller can refuse a huge file before reading it. */
export function checkItemSize(size: number, limit = MAX_ITEM_BYTES): RefusedItem | undefined {
  if (size === 0) return { ok: false, reason: 'The file is empty: there is nothing to open.' };
  if (size > limit) {
    return {
      ok: false,
      reason: `The file is ${mb(size)}, larger than the ${mb(limit)} a sandbox opens; it was not opened.`,
    };
  }
  return undefined;
}

/** Decides how (and whether) an item opens, from its content first and its name second. */
export function classifyItem(name: string, bytes: Uint8Array, limit = MAX_ITEM_BYTES): ItemDecision {
  const sizeProblem = checkItemSize(bytes.length, limit);
  if (sizeProblem) return sizeProblem;
  const ext = extensionOf(name);
  let key: keyof typeof KINDS | undefined = sniffBinary(bytes);
  if (!key) {
    if (!looksLikeText(bytes)) {
      return {
        ok: false,
        reason: `The file's content is not a type a sandbox shows (PDF, PNG, JPEG, GIF, WebP, SVG, HTML or text)${ext ? `, whatever its .${ext} name says` : ''}; it was not opened.`,
      };
    }
    const head = Buffer.from(bytes.subarray(0, 4096)).toString('utf8').toLowerCase();
    if (ext === 'svg' && head.includes('<svg')) key = 'svg';
    else if (HTML_EXTENSIONS.has(ext)) key = 'html';
    else key = 'text';
  }
  const kind: ItemKind = KINDS[key];
  const claimed = CLAIMED[ext];
  const note =
    claimed !== undefined && claimed !== key
      ? `The name ends in .${ext} but the content is ${kind.detected}: it opens as ${kind.detected}.`
      : undefined;
  return { ok: true, kind, guestName: guestFileName(name, kind.ext), ...(note ? { note } : {}) };
}

/** What may be opened as a URL: http and https only, no credentials, at most 8 KiB. */
export function classifyUrl(text: string): { ok: true; url: string } | RefusedItem {
  if (text.length > 8192) return { ok: false, reason: 'The link is too long.' };
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { ok: false, reason: 'That is not a valid link.' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { ok: false, reason: `Only http and https links open in a sandbox (not ${url.protocol}).` };
  }
  if (url.username || url.password) return { ok: false, reason: 'Links with a user name or password are not opened.' };
  return { ok: true, url: url.href };
}

/** The raw disk image holding one accepted item (see the format at the top). */
export function itemDiskImage(item: AcceptedItem, bytes: Uint8Array): Buffer {
  const header = [
    ITEM_DISK_MAGIC,
    `size=${bytes.length}`,
    `name=${item.guestName}`,
    `viewer=${item.kind.viewer}`,
    `mime=${item.kind.mime}`,
    `sha256=${createHash('sha256').update(bytes).digest('hex')}`,
    '',
  ].join('\n');
  const headerBytes = Buffer.from(header, 'utf8');
  if (headerBytes.length > ITEM_HEADER_BYTES) throw new Error('item header too long');
  const total = ITEM_HEADER_BYTES + Math.ceil(bytes.length / SECTOR_BYTES) * SECTOR_BYTES;
  const image = Buffer.alloc(total);
  headerBytes.copy(image, 0);
  image.set(bytes, ITEM_HEADER_BYTES);
  return image;
}

/** Reads a file for opening, refusing special files and huge ones before reading their content. */
export function readItemFile(path: string, limit = MAX_ITEM_BYTES): { ok: true; bytes: Buffer } | RefusedItem {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    return { ok: false, reason: `The file cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}.` };
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) return { ok: false, reason: 'Only regular files open in a sandbox.' };
    const sizeProblem = checkItemSize(stat.size, limit);
    if (sizeProblem) return sizeProblem;
    const bytes = Buffer.alloc(stat.size);
    let done = 0;
    while (done < bytes.length) {
      const n = readSync(fd, bytes, done, bytes.length - done, done);
      if (n === 0) break;
      done += n;
    }
    return { ok: true, bytes: bytes.subarray(0, done) };
  } finally {
    closeSync(fd);
  }
}
