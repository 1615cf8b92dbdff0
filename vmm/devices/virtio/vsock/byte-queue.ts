/**
 * A FIFO of bytes in one growable ring buffer, for data a guest sent that the
 * host has not read yet.
 *
 * Why not a list of Buffers: a guest may send its whole credit as 1-byte
 * packets, and a Buffer object per packet would cost far more host memory
 * than the bytes themselves. Here memory is the bytes: the ring grows by
 * doubling up to `max` and is freed whenever it drains.
 */
export class ByteQueue {
  private buf: Buffer | null = null;
  private head = 0;
  private size = 0;

  constructor(
    /** The most bytes the queue will ever hold (the caller enforces it). */
    readonly max: number,
  ) {}

  get length(): number {
    return this.size;
  }

  /** Bytes currently allocated (for tests and accounting). */
  get capacity(): number {
    return this.buf ? this.buf.length : 0;
  }

  /**
   * Append `n` bytes that `fill(offset, into)` writes: called once, or twice
   * when the free space wraps, with `offset` counting from the first byte of
   * the appended data. Throws RangeError beyond `max` (a caller bug).
   */
  append(n: number, fill: (offset: number, into: Uint8Array) => void): void {
    if (n === 0) return;
    if (this.size + n > this.max) throw new RangeError(`byte queue overflow: ${this.size} + ${n} > ${this.max}`);
    const buf = this.reserve(this.size + n);
    const tail = (this.head + this.size) % buf.length;
    const first = Math.min(n, buf.length - tail);
    fill(0, buf.subarray(tail, tail + first));
    if (first < n) fill(first, buf.subarray(0, n - first));
    this.size += n;
  }

  /** Remove and return up to `n` bytes as a new Buffer (null when empty). */
  take(n: number): Buffer | null {
    const buf = this.buf;
    const count = Math.min(n, this.size);
    if (!buf || count <= 0) return null;
    const out = Buffer.allocUnsafe(count);
    const first = Math.min(count, buf.length - this.head);
    buf.copy(out, 0, this.head, this.head + first);
    if (first < count) buf.copy(out, first, 0, count - first);
    this.head = (this.head + count) % buf.length;
    this.size -= count;
    if (this.size === 0) this.clear();
    return out;
  }

  /** Drop everything and free the ring. */
  clear(): void {
    this.buf = null;
    this.head = 0;
    this.size = 0;
  }

  private reserve(needed: number): Buffer {
    const current = this.buf;
    if (current && current.length >= needed) return current;
    let capacity = current ? current.length : 4096;
    while (capacity < needed) capacity *= 2;
    capacity = Math.min(capacity, this.max);
    const next = Buffer.allocUnsafe(capacity);
    if (current && this.size > 0) {
      const first = Math.min(this.size, current.length - this.head);
      current.copy(next, 0, this.head, this.head + first);
      if (first < this.size) current.copy(next, first, 0, this.size - first);
    }
    this.buf = next;
    this.head = 0;
    return next;
  }
}
