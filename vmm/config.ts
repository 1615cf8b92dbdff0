/**
 * A VM's configuration: what the CLI and the app pass in, validated into one
 * typed object with sane defaults. Every error names the bad field.
 */
import { totalmem } from 'node:os';
import { MAX_GUEST_RAM, MAX_VCPUS, VIRTIO_MMIO_SLOT_COUNT, MiB } from './arch/x86_64/layout.js';

export interface DiskConfig {
  readonly path: string;
  readonly readOnly: boolean;
  /** The virtio-blk serial the guest sees (/sys/block/vdX/serial); at most 20 bytes. */
  readonly serial?: string;
}

export interface VmConfig {
  readonly kernel: string;
  readonly initrd?: string;
  readonly cmdline: string;
  readonly disks: readonly DiskConfig[];
  readonly memoryMiB: number;
  readonly vcpus: number;
  /** Offer a virtio-rng so the guest has entropy at once. */
  readonly rng: boolean;
  /** Deliver virtqueue notifications through ioeventfds (no exit to userspace). */
  readonly ioeventfd: boolean;
  /** A virtio-gpu display of this size (omitted: no display). */
  readonly display?: DisplayConfig;
  /** A virtio-input keyboard and absolute pointer. */
  readonly input: boolean;
  /** A virtio-vsock device with this guest CID (omitted: no vsock). */
  readonly vsockCid?: number;
}

export interface DisplayConfig {
  readonly width: number;
  readonly height: number;
}

/** The display sizes a guest may be given (virtio-gpu's own clamp is the same). */
export const MIN_DISPLAY_SIDE = 64;
export const MAX_DISPLAY_SIDE = 3840;
/** The first guest CID; 0–2 are reserved (hypervisor, local, host). */
export const MIN_GUEST_CID = 3;
const MAX_GUEST_CID = 0xffff_fffe;

/**
 * The default kernel command line: serial console, reboot through the i8042,
 * reboot at once on panic (the VMM reports it), no PCI or PS/2 probing.
 */
export const DEFAULT_CMDLINE =
  'console=ttyS0 reboot=k panic=-1 pci=off 8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd';
export const DEFAULT_MEMORY_MIB = 512;
export const DEFAULT_VCPUS = 1;
/** Below this Linux cannot boot. */
export const MIN_MEMORY_MIB = 32;
const VIRTIO_BLK_SERIAL_MAX = 20;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function expectString(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new ConfigError(`${field} must be a non-empty string`);
  return value;
}

function expectInteger(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${field} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** "path" or "path:ro" / "path:rw" (the CLI's --disk syntax). */
export function parseDiskSpec(spec: string): DiskConfig {
  const match = /^(.*?)(?::(ro|rw))?$/.exec(spec);
  const path = match?.[1] ?? '';
  if (!path) throw new ConfigError(`--disk needs a path, got ${JSON.stringify(spec)}`);
  return { path, readOnly: match?.[2] === 'ro' };
}

function parseDisk(value: unknown, index: number): DiskConfig {
  if (typeof value === 'string') return parseDiskSpec(value);
  if (!isRecord(value)) throw new ConfigError(`disks[${index}] must be a "path[:ro]" string or an object`);
  const path = expectString(value['path'], `disks[${index}].path`);
  const readOnly = value['readOnly'] ?? false;
  if (typeof readOnly !== 'boolean') throw new ConfigError(`disks[${index}].readOnly must be true or false`);
  const serial = value['serial'];
  if (serial !== undefined) {
    if (typeof serial !== 'string' || Buffer.byteLength(serial) > VIRTIO_BLK_SERIAL_MAX) {
      throw new ConfigError(`disks[${index}].serial must be a string of at most ${VIRTIO_BLK_SERIAL_MAX} bytes`);
    }
    return { path, readOnly, serial };
  }
  return { path, readOnly };
}

/** Largest guest RAM: below the 32-bit MMIO gap, and no more than the host has. */
export function maxMemoryMiB(hostBytes = totalmem()): number {
  return Math.floor(Math.min(MAX_GUEST_RAM, hostBytes) / MiB);
}

/** Validates a JSON-like object (from --config or the CLI flags) into a VmConfig. */
export function parseVmConfig(raw: unknown, hostBytes = totalmem()): VmConfig {
  if (!isRecord(raw)) throw new ConfigError('the VM configuration must be a JSON object');
  const known = new Set([
    'kernel',
    'initrd',
    'cmdline',
    'disks',
    'memoryMiB',
    'vcpus',
    'rng',
    'ioeventfd',
    'display',
    'input',
    'vsockCid',
  ]);
  const unknown = Object.keys(raw).filter((k) => !known.has(k));
  if (unknown.length > 0) throw new ConfigError(`unknown configuration field(s): ${unknown.join(', ')}`);

  const kernel = expectString(raw['kernel'], 'kernel');
  const initrd = raw['initrd'] === undefined ? undefined : expectString(raw['initrd'], 'initrd');
  const cmdline = raw['cmdline'] === undefined ? DEFAULT_CMDLINE : raw['cmdline'];
  if (typeof cmdline !== 'string') throw new ConfigError('cmdline must be a string');
  const disksRaw = raw['disks'] ?? [];
  if (!Array.isArray(disksRaw)) throw new ConfigError('disks must be an array');
  const rng = raw['rng'] ?? true;
  if (typeof rng !== 'boolean') throw new ConfigError('rng must be true or false');
  const input = raw['input'] ?? false;
  if (typeof input !== 'boolean') throw new ConfigError('input must be true or false');
  let display: DisplayConfig | undefined;
  if (raw['display'] !== undefined) {
    const d = raw['display'];
    if (!isRecord(d)) throw new ConfigError('display must be an object {width, height}');
    display = {
      width: expectInteger(d['width'], 'display.width', MIN_DISPLAY_SIDE, MAX_DISPLAY_SIDE),
      height: expectInteger(d['height'], 'display.height', MIN_DISPLAY_SIDE, MAX_DISPLAY_SIDE),
    };
  }
  const vsockCid =
    raw['vsockCid'] === undefined
      ? undefined
      : expectInteger(raw['vsockCid'], 'vsockCid', MIN_GUEST_CID, MAX_GUEST_CID);
  // Every virtio device takes one of the fixed virtio-mmio slots; disks get what is left.
  const otherDevices = (rng ? 1 : 0) + (display ? 1 : 0) + (input ? 2 : 0) + (vsockCid === undefined ? 0 : 1);
  const maxDisks = VIRTIO_MMIO_SLOT_COUNT - otherDevices;
  if (disksRaw.length > maxDisks) {
    throw new ConfigError(`at most ${maxDisks} disks with these devices, got ${disksRaw.length}`);
  }
  const disks = disksRaw.map(parseDisk);

  const limit = maxMemoryMiB(hostBytes);
  const memoryMiB = raw['memoryMiB'] ?? DEFAULT_MEMORY_MIB;
  if (typeof memoryMiB === 'number' && Number.isInteger(memoryMiB) && memoryMiB > limit) {
    throw new ConfigError(
      `memoryMiB ${memoryMiB} is more than this host can give a guest (at most ${limit} MiB: ` +
        `${Math.floor(MAX_GUEST_RAM / MiB)} MiB below the MMIO gap, ${Math.floor(hostBytes / MiB)} MiB in the host)`,
    );
  }
  const vcpus = expectInteger(raw['vcpus'] ?? DEFAULT_VCPUS, 'vcpus', 1, MAX_VCPUS);
  const ioeventfd = raw['ioeventfd'] ?? true;
  if (typeof ioeventfd !== 'boolean') throw new ConfigError('ioeventfd must be true or false');
  const config: VmConfig = {
    kernel,
    cmdline,
    disks,
    memoryMiB: expectInteger(memoryMiB, 'memoryMiB', MIN_MEMORY_MIB, limit),
    vcpus,
    rng,
    ioeventfd,
    input,
    ...(display ? { display } : {}),
    ...(vsockCid === undefined ? {} : { vsockCid }),
  };
  return initrd === undefined ? config : { ...config, initrd };
}
