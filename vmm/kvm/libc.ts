/**
 * The few libc calls the VMM needs, bound through koffi. Variadic functions
 * (ioctl) get fixed-arity declarations: koffi calls those faster, and the hot
 * KVM_RUN call needs one.
 *
 * Pointers are BigInt (koffi 3). A Uint8Array passed where a `void *` is
 * expected is passed as a pointer to its bytes, so ioctl argument structs are
 * plain typed arrays built in JS.
 */
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

/** A pointer-sized argument: a BigInt address or a typed array's bytes. */
export type PointerArg = bigint | Uint8Array | Int32Array | null;

export const open = libc.func('int open(const char *path, int flags, int mode)') as (
  path: string,
  flags: number,
  mode: number,
) => number;
export const close = libc.func('int close(int fd)') as (fd: number) => number;
/** ioctl(fd, request, pointer) */
export const ioctlPtr = libc.func('ioctl', 'int', ['int', 'unsigned long', 'void *']) as (
  fd: number,
  request: number,
  arg: PointerArg,
) => number;
/** ioctl(fd, request, integer) */
export const ioctlInt = libc.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']) as (
  fd: number,
  request: number,
  arg: number | bigint,
) => number;
export const mmap = libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)') as (
  addr: PointerArg,
  length: number,
  prot: number,
  flags: number,
  fd: number,
  offset: number,
) => bigint;
export const munmap = libc.func('int munmap(void *addr, size_t length)') as (addr: bigint, length: number) => number;
export const memcpy = libc.func('void *memcpy(void *dst, void *src, size_t n)') as (
  dst: PointerArg,
  src: PointerArg,
  n: number,
) => bigint;
export const eventfd = libc.func('int eventfd(unsigned int initval, int flags)') as (
  initval: number,
  flags: number,
) => number;
export const read = libc.func('long read(int fd, void *buf, size_t n)') as (
  fd: number,
  buf: Uint8Array,
  n: number,
) => number;
export const pthreadSelf = libc.func('unsigned long pthread_self(void)') as () => bigint | number;
export const pthreadKill = libc.func('int pthread_kill(unsigned long thread, int sig)') as (
  thread: bigint | number,
  sig: number,
) => number;
export const strerror = libc.func('const char *strerror(int errnum)') as (errnum: number) => string;

export const errno = (): number => koffi.errno();

/**
 * The address of a typed array's first byte (for registering guest RAM with
 * KVM). koffi passes a typed array's own backing store for a `void *`
 * argument, and memcpy returns its destination, so a zero-length copy yields
 * the address without touching the bytes.
 */
export const addressOf = (bytes: Uint8Array): bigint => memcpy(bytes, bytes, 0);

// open(2) flags and mmap(2) constants (x86-64 Linux).
export const O_RDWR = 0o2;
export const O_CLOEXEC = 0o2000000;
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x01;
export const MAP_FAILED = 0xffff_ffff_ffff_ffffn;
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;

// errno values the VMM reacts to.
export const EINTR = 4;
export const EAGAIN = 11;
export const ENOENT = 2;
export const EACCES = 13;

export class SyscallError extends Error {
  constructor(
    readonly call: string,
    readonly errno: number,
  ) {
    super(`${call} failed: ${strerror(errno)} (errno ${errno})`);
    this.name = 'SyscallError';
  }
}

/** Throws SyscallError when a libc call returned -1. */
export function check(result: number, call: string): number {
  if (result < 0) throw new SyscallError(call, errno());
  return result;
}
