/**
 * Host memory of a running VMM process, read from /proc: the buckets of
 * /proc/<pid>/status (VmRSS, RssAnon, RssFile, RssShmem) and, from
 * /proc/<pid>/smaps, how much of the resident memory is the guest's RAM
 * mapping and how much is everything else (the VMM's own cost).
 *
 * Guest RAM is found by shape: one anonymous, writable, private mapping at
 * least as large as the guest's RAM and at most GUEST_MAPPING_SLACK larger.
 * Our VMM's RAM is a SharedArrayBuffer that glibc's calloc places in its own
 * mmap (guest size + one alignment page + malloc's header page); QEMU's is an
 * anonymous mmap of exactly the guest size. Both are private anonymous
 * memory, so they count in RssAnon, not RssShmem.
 */
import { readFile } from 'node:fs/promises';

const KiB = 1024;
const MiB = 1024 * 1024;
/** How much larger than the guest's RAM its host mapping may be (alignment, allocator headers). */
const GUEST_MAPPING_SLACK = 4 * MiB;

export interface StatusRss {
  readonly vmRss: number;
  readonly rssAnon: number;
  readonly rssFile: number;
  readonly rssShmem: number;
}

export interface SmapsSplit {
  /** Σ Rss of all mappings (bytes). */
  readonly total: number;
  /** Σ Anonymous of all mappings (bytes). */
  readonly anonymous: number;
  /** Rss of the guest-RAM mapping (bytes), or null when none was found. */
  readonly guest: number | null;
  /** Anonymous pages of the guest-RAM mapping (bytes), or null. */
  readonly guestAnonymous: number | null;
}

/** Parses the Rss lines of /proc/<pid>/status (values in bytes). */
export function parseStatus(text: string): StatusRss | null {
  const field = (name: string): number | null => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(text);
    return match?.[1] === undefined ? null : Number(match[1]) * KiB;
  };
  const vmRss = field('VmRSS');
  if (vmRss === null) return null; // a zombie or a kernel thread
  return { vmRss, rssAnon: field('RssAnon') ?? 0, rssFile: field('RssFile') ?? 0, rssShmem: field('RssShmem') ?? 0 };
}

const MAPPING_HEADER = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ (\d+)\s*(.*)$/;

/** Splits /proc/<pid>/smaps into guest RAM and the rest. */
export function parseSmaps(text: string, guestBytes: number): SmapsSplit {
  let total = 0;
  let anonymous = 0;
  let guest: number | null = null;
  let guestAnonymous: number | null = null;
  let current: { isGuest: boolean } | null = null;
  for (const line of text.split('\n')) {
    const header = MAPPING_HEADER.exec(line);
    if (header) {
      const size = Number(BigInt(`0x${header[2]}`) - BigInt(`0x${header[1]}`));
      const perms = header[3] ?? '';
      const inode = header[4] ?? '';
      const path = (header[5] ?? '').trim();
      const anonymousMapping = inode === '0' && (path === '' || path.startsWith('[anon'));
      current = {
        isGuest:
          anonymousMapping &&
          perms.startsWith('rw') &&
          perms[3] === 'p' &&
          size >= guestBytes &&
          size <= guestBytes + GUEST_MAPPING_SLACK,
      };
      continue;
    }
    if (!current) continue;
    const value = /^(Rss|Anonymous):\s+(\d+) kB$/.exec(line);
    if (!value) continue;
    const bytes = Number(value[2]) * KiB;
    if (value[1] === 'Rss') {
      total += bytes;
      // Should there ever be two candidates, the larger resident one is the RAM.
      if (current.isGuest && (guest === null || bytes > guest)) guest = bytes;
    } else {
      anonymous += bytes;
      if (current.isGuest && (guestAnonymous === null || bytes > guestAnonymous)) guestAnonymous = bytes;
    }
  }
  return { total, anonymous, guest, guestAnonymous };
}

/** What the sampler saw over a process's life (MiB); null where nothing was read. */
export interface MemoryReport {
  /** Status samples taken. */
  readonly samples: number;
  readonly vmRssMiB: number | null;
  readonly rssAnonMiB: number | null;
  readonly rssFileMiB: number | null;
  readonly rssShmemMiB: number | null;
  /** RssAnon + RssFile, i.e. VmRSS without RssShmem, at its peak. */
  readonly rssWithoutShmemMiB: number | null;
  /** From the one smaps snapshot: the resident part of the guest-RAM mapping. */
  readonly guestResidentMiB: number | null;
  /** From the snapshot: Σ Rss − guest-RAM Rss, the VMM's own resident memory. */
  readonly beyondGuestMiB: number | null;
  /** From the snapshot: Σ Anonymous − guest-RAM Anonymous, the VMM's private memory (heap, stacks, JIT). */
  readonly beyondGuestAnonMiB: number | null;
  /** Peak VmRSS − guest RAM resident at the snapshot (an estimate: the guest touches little after it). */
  readonly peakBeyondGuestMiB: number | null;
}

export const EMPTY_MEMORY_REPORT: MemoryReport = {
  samples: 0,
  vmRssMiB: null,
  rssAnonMiB: null,
  rssFileMiB: null,
  rssShmemMiB: null,
  rssWithoutShmemMiB: null,
  guestResidentMiB: null,
  beyondGuestMiB: null,
  beyondGuestAnonMiB: null,
  peakBeyondGuestMiB: null,
};

/**
 * Samples a process's /proc/<pid>/status every `intervalMs` until stopped and
 * takes peaks. Reading smaps walks the process's page tables and, in the lab,
 * visibly slows a booting VMM (QEMU took ~5 s longer to boot while smaps was
 * read every 100 ms), so smaps is read once, when asked (`snapshot()`, taken
 * when the guest reports init). Reads never overlap; a read that fails
 * because the process is gone is ignored.
 */
export class MemorySampler {
  private timer: NodeJS.Timeout | null = null;
  private running = true;
  private inFlight: Promise<void> = Promise.resolve();
  private snapshotTaken: Promise<void> | null = null;
  private samples = 0;
  private split: SmapsSplit | null = null;
  private peak = { vmRss: -1, rssAnon: -1, rssFile: -1, rssShmem: -1, rssWithoutShmem: -1 };

  constructor(
    private readonly pid: number,
    private readonly guestBytes: number,
    private readonly intervalMs = 100,
  ) {
    this.schedule(0);
  }

  private schedule(delay: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.inFlight = this.sample().finally(() => this.schedule(this.intervalMs));
    }, delay);
  }

  private async sample(): Promise<void> {
    let text: string;
    try {
      text = await readFile(`/proc/${this.pid}/status`, 'utf8');
    } catch {
      return; // the process has exited
    }
    const status = parseStatus(text);
    if (!status) return;
    const p = this.peak;
    this.samples++;
    p.vmRss = Math.max(p.vmRss, status.vmRss);
    p.rssAnon = Math.max(p.rssAnon, status.rssAnon);
    p.rssFile = Math.max(p.rssFile, status.rssFile);
    p.rssShmem = Math.max(p.rssShmem, status.rssShmem);
    p.rssWithoutShmem = Math.max(p.rssWithoutShmem, status.rssAnon + status.rssFile);
  }

  /** Reads smaps once (the first call only) and keeps the guest / rest split. */
  snapshot(): Promise<void> {
    this.snapshotTaken ??= (async () => {
      try {
        const text = await readFile(`/proc/${this.pid}/smaps`, 'utf8');
        if (text.length > 0) this.split = parseSmaps(text, this.guestBytes);
      } catch {
        // the process has exited
      }
    })();
    return this.snapshotTaken;
  }

  /** Stops sampling (after any read in progress) and reports. */
  async stop(): Promise<MemoryReport> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    await Promise.all([this.inFlight, this.snapshotTaken]);
    const mib = (bytes: number | null) => (bytes === null || bytes < 0 ? null : Math.round((bytes / MiB) * 10) / 10);
    const p = this.peak;
    const guest = this.split?.guest ?? null;
    const split = this.split;
    return {
      samples: this.samples,
      vmRssMiB: mib(p.vmRss),
      rssAnonMiB: mib(p.rssAnon),
      rssFileMiB: mib(p.rssFile),
      rssShmemMiB: mib(p.rssShmem),
      rssWithoutShmemMiB: mib(p.rssWithoutShmem),
      guestResidentMiB: mib(guest),
      beyondGuestMiB: split && guest !== null ? mib(split.total - guest) : null,
      beyondGuestAnonMiB: split && guest !== null ? mib(split.anonymous - (split.guestAnonymous ?? 0)) : null,
      peakBeyondGuestMiB: guest !== null && p.vmRss >= 0 ? mib(p.vmRss - guest) : null,
    };
  }
}
