/**
 * A writer for the "newc" cpio format the Linux kernel unpacks as an
 * initramfs. Entries get fixed owners and timestamps so the same inputs give
 * byte-identical archives (reproducible builds).
 */

const MODE_DIR = 0o040000;
const MODE_FILE = 0o100000;
const MODE_SYMLINK = 0o120000;
const MODE_CHAR_DEVICE = 0o020000;
const NEWC_MAGIC = '070701';
const NEWC_HEADER_SIZE = 110;
const TRAILER = 'TRAILER!!!';

function hex8(value: number): string {
  return value.toString(16).padStart(8, '0');
}

function pad4(length: number): number {
  return (4 - (length % 4)) % 4;
}

export class CpioWriter {
  private readonly chunks: Buffer[] = [];
  private readonly seen = new Set<string>();
  private inode = 1;

  private entry(path: string, mode: number, data: Uint8Array, rdevMajor = 0, rdevMinor = 0): void {
    const name = path.replace(/^\/+/, '');
    if (this.seen.has(name)) throw new Error(`cpio: duplicate entry ${name}`);
    this.seen.add(name);
    const nameBytes = Buffer.from(`${name}\0`);
    const header =
      NEWC_MAGIC +
      [this.inode++, mode, 0, 0, 1, 0, data.length, 0, 0, rdevMajor, rdevMinor, nameBytes.length, 0].map(hex8).join('');
    this.chunks.push(Buffer.from(header, 'ascii'), nameBytes, Buffer.alloc(pad4(NEWC_HEADER_SIZE + nameBytes.length)));
    this.chunks.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength), Buffer.alloc(pad4(data.length)));
  }

  dir(path: string, permissions = 0o755): this {
    this.entry(path, MODE_DIR | permissions, new Uint8Array(0));
    return this;
  }

  /** Adds `path` and any missing parent directories. */
  dirs(path: string): this {
    const parts = path.replace(/^\/+/, '').split('/');
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (!this.seen.has(prefix)) this.dir(prefix);
    }
    return this;
  }

  file(path: string, data: Uint8Array | string, permissions = 0o644): this {
    this.entry(path, MODE_FILE | permissions, typeof data === 'string' ? Buffer.from(data) : data);
    return this;
  }

  symlink(path: string, target: string): this {
    this.entry(path, MODE_SYMLINK | 0o777, Buffer.from(target));
    return this;
  }

  charDevice(path: string, major: number, minor: number, permissions = 0o600): this {
    this.entry(path, MODE_CHAR_DEVICE | permissions, new Uint8Array(0), major, minor);
    return this;
  }

  /** The finished archive (with its trailer). The writer cannot be used after. */
  finish(): Buffer {
    this.entry(TRAILER, 0, new Uint8Array(0));
    return Buffer.concat(this.chunks);
  }
}
