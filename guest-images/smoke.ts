/**
 * `npm run guest:smoke`: boots the built guest under QEMU with the software
 * CPU (microvm + ACPI, virtio-mmio devices: rootfs disk, two item disks, GPU,
 * agent port), opens a fixture HTML page and a fixture PDF through the agent,
 * and asserts on the colours QEMU's screendump shows. Prints the timings.
 *
 * Everything it starts is ended and every temp file removed, on success,
 * failure, timeout or Ctrl-C. On failure the last screendump (PNG) and the
 * console log are kept under `<cache>/smoke-failure/`.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildGuest } from './build.js';
import { cacheRoot } from './cache.js';
import { classifyItem, itemDiskImage, readItemFile } from './item.js';
import { coverage, hex, parsePpm, pixel, near, type Image, type Rgb } from './ppm.js';
import type { GuestMessage, StatusMessage } from './protocol.js';
import { QemuGuest } from './qemu.js';

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/guest/', import.meta.url));
/** The whole run, build check included, must end within this. */
const TOTAL_TIMEOUT_MS = 8 * 60_000;
const READY_TIMEOUT_MS = 120_000;
/** A kernel message on the serial console (`[    0.403100] …`); anything else came from user space. */
const KERNEL_LINE = /^\[\s*\d+\.\d+\]/;
const PAGE_TIMEOUT_MS = 150_000;

/** Colours painted by the fixtures (see test/fixtures/guest/). */
const HTML_CORNER: Rgb = { r: 0xff, g: 0x88, b: 0x00 };
const HTML_BACKGROUND: Rgb = { r: 0x10, g: 0x40, b: 0xc0 };
const PDF_GREEN: Rgb = { r: 0x00, g: 0xaa, b: 0x44 };
const PDF_MAGENTA: Rgb = { r: 0xff, g: 0x00, b: 0xff };

interface Check {
  readonly name: string;
  /** Returns undefined when the screen shows what it should, else what is wrong. */
  readonly test: (image: Image) => string | undefined;
}

const htmlCheck: Check = {
  name: 'HTML fixture',
  test: (img) => {
    const corner = pixel(img, Math.floor(img.width * 0.2), Math.floor(img.height * 0.2));
    const back = pixel(img, Math.floor(img.width * 0.8), Math.floor(img.height * 0.8));
    if (!near(corner, HTML_CORNER) || !near(back, HTML_BACKGROUND)) {
      return `corner ${hex(corner)} (want ${hex(HTML_CORNER)}), background ${hex(back)} (want ${hex(HTML_BACKGROUND)})`;
    }
    const orange = coverage(img, HTML_CORNER, { x0: 0, y0: 0, x1: 0.5, y1: 0.5 });
    return orange > 0.95 ? undefined : `top-left quarter only ${(orange * 100).toFixed(0)}% orange`;
  },
};

const pdfCheck: Check = {
  name: 'PDF fixture',
  test: (img) => {
    const green = coverage(img, PDF_GREEN);
    const magenta = coverage(img, PDF_MAGENTA);
    // The page (800×500 pt, green with a magenta square in the middle) fills
    // much of the viewer; the square is 8% of the page.
    if (green < 0.2 || magenta < 0.02) {
      return `green covers ${(green * 100).toFixed(1)}% (want ≥ 20%), magenta ${(magenta * 100).toFixed(1)}% (want ≥ 2%)`;
    }
    return undefined;
  },
};

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const manifest = await buildGuest((line) => console.log(line));
  console.log(`smoke: guest image ready (${seconds(performance.now() - t0)})`);

  const work = mkdtempSync(join(tmpdir(), 'belljar-smoke-'));
  let guest: QemuGuest | undefined;
  let lastDump: string | undefined;
  const cleanup = (): void => {
    guest?.kill();
    rmSync(work, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    console.error(`smoke: ${signal}, stopping QEMU`);
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const overall = setTimeout(() => {
    console.error(`smoke: over the ${seconds(TOTAL_TIMEOUT_MS)} limit, stopping QEMU`);
    cleanup();
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);

  try {
    // Item disks, made the way the product makes them (host side, no root, no tools).
    const disks: string[] = [];
    for (const name of ['smoke-page.html', 'smoke-doc.pdf']) {
      const read = readItemFile(join(FIXTURES, name));
      if (!read.ok) throw new Error(`${name}: ${read.reason}`);
      const decision = classifyItem(name, read.bytes);
      if (!decision.ok) throw new Error(`${name}: ${decision.reason}`);
      const disk = join(work, `item-${disks.length + 1}.img`);
      writeFileSync(disk, itemDiskImage(decision, read.bytes));
      disks.push(disk);
    }

    const verbose = process.env['BELLJAR_SMOKE_VERBOSE'] === '1';
    // Under TCG on a loaded 2-core host the kernel has been seen (a few times
    // in many runs) to stall in early boot: before its first message, or
    // right after it, before any user-space process spoke. One fresh boot is
    // allowed for that, announced loudly, so CI fails only on a repeatable
    // problem; a boot that got as far as our init is never retried.
    let ready: GuestMessage | undefined;
    for (let attempt = 1; !ready; attempt++) {
      const launchAt = performance.now();
      guest = await QemuGuest.start({
        manifest,
        itemDisks: disks,
        workDir: work,
        onConsole: (line) => {
          if (verbose)
            console.log(`  guest ${((performance.now() - launchAt) / 1000).toFixed(1).padStart(6)}| ${line}`);
        },
      });
      console.log(`smoke: QEMU started (TCG, microvm + ACPI, virtio-mmio), boot attempt ${attempt}`);
      try {
        ready = await guest.waitFor((m) => m.type === 'ready', READY_TIMEOUT_MS, 'the agent to say ready');
      } catch (error) {
        if (attempt >= 2 || !guest.serialLines.every((line) => KERNEL_LINE.test(line))) throw error;
        console.log(
          `smoke: WARNING: boot attempt ${attempt} stalled in the kernel's early boot ` +
            `(${guest.serialLines.length} kernel lines, nothing from user space); retrying once`,
        );
        await guest.stop();
      }
    }
    const g = guest;
    if (!g) throw new Error('no guest');
    const powerOn = g.startedAt;
    const since = (): string => seconds(performance.now() - powerOn);
    console.log(`smoke: agent ready at ${since()} after power-on`);
    if (ready.type === 'ready') {
      const marks = Object.entries(ready.timings)
        .sort((a, b) => a[1] - b[1])
        .map(([k, v]) => `${k} ${seconds(v)}`);
      console.log(`smoke: guest uptime marks: ${marks.join(', ')}`);
    }

    let nextId = 1;
    const openAndCheck = async (disk: string, check: Check): Promise<number> => {
      const id = nextId++;
      const sent = performance.now();
      g.send({ v: 1, type: 'open', id, item: { disk } });
      const status = (await g.waitFor(
        (m: GuestMessage) => m.type === 'status' && m.id === id && (m.state === 'loaded' || m.state === 'error'),
        PAGE_TIMEOUT_MS,
        `${check.name} to load`,
      )) as StatusMessage;
      if (status.state === 'error') throw new Error(`${check.name}: the agent reports ${status.error ?? 'an error'}`);
      const guestTimes = [
        status.devtoolsMs !== undefined ? `Chromium's DevTools up at uptime ${seconds(status.devtoolsMs)}` : '',
        status.uptimeMs !== undefined ? `loaded at uptime ${seconds(status.uptimeMs)}` : '',
      ].filter(Boolean);
      console.log(
        `smoke: ${check.name} loaded ("${status.title ?? ''}") ${seconds(performance.now() - sent)} after open${guestTimes.length ? ` (${guestTimes.join(', ')})` : ''}`,
      );
      const deadline = performance.now() + PAGE_TIMEOUT_MS;
      let problem: string | undefined = 'no screendump yet';
      for (let n = 0; performance.now() < deadline; n++) {
        const file = join(work, `screen-${id}-${n}.ppm`);
        await g.screendump(file);
        lastDump = file;
        problem = check.test(parsePpm(readFileSync(file)));
        rmSync(file.replace(/-\d+\.ppm$/, `-${n - 1}.ppm`), { force: true });
        if (!problem) {
          const shown = performance.now();
          const shots = process.env['BELLJAR_SMOKE_SHOTS'];
          if (shots) {
            mkdirSync(shots, { recursive: true });
            await g.screendump(join(shots, `${check.name.replace(/\W+/g, '-').toLowerCase()}.png`), 'png');
          }
          console.log(
            `smoke: ${check.name} on screen at ${since()} after power-on (${seconds(shown - sent)} after open)`,
          );
          return shown - powerOn;
        }
        if (g.hasExited) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      throw new Error(`${check.name} never appeared on screen: ${problem}`);
    };

    const firstPage = await openAndCheck('vdb', htmlCheck);
    await openAndCheck('vdc', pdfCheck);

    // A request the agent must refuse without harm.
    const badId = nextId++;
    g.send({ v: 1, type: 'open', id: badId, item: { disk: '../sda' } });
    const bad = await g.waitFor((m) => m.type === 'status' && m.id === badId, 30_000, 'the refusal of a bad disk name');
    if (bad.type !== 'status' || bad.state !== 'error') throw new Error('the agent accepted a bad disk name');
    console.log(`smoke: bad disk name refused by the agent ("${bad.error ?? ''}")`);
    if (g.protocolErrors.length)
      throw new Error(`protocol errors from the guest: ${g.protocolErrors.map((e) => e.message).join('; ')}`);

    const byeId = nextId++;
    g.send({ v: 1, type: 'shutdown', id: byeId });
    await g.waitFor((m) => m.type === 'bye', 20_000, 'the agent to say bye');
    await g.stop();
    console.log(`smoke: power-on to first page ${seconds(firstPage)}; whole smoke ${seconds(performance.now() - t0)}`);
    console.log('smoke: 2 passed, 0 failed');
  } catch (error) {
    if (guest) console.error(guest.consoleLines.slice(-40).join('\n'));
    console.error(`smoke: FAILED: ${error instanceof Error ? error.message : String(error)}`);
    const keep = join(cacheRoot(), 'smoke-failure');
    try {
      mkdirSync(keep, { recursive: true });
      if (guest) {
        writeFileSync(join(keep, 'console.log'), `${guest.consoleLines.join('\n')}\n`);
        if (!guest.hasExited) await guest.screendump(join(keep, 'screen.png'), 'png').catch(() => {});
        if (lastDump && existsSync(lastDump)) copyFileSync(lastDump, join(keep, 'screen.ppm'));
      }
      console.error(`smoke: console log and last screen kept in ${keep}`);
    } catch (keepError) {
      // A read-only cache (inside the KVM lab) keeps nothing; the log above says what failed.
      console.error(`smoke: could not keep the failure's files: ${String(keepError)}`);
    }
    process.exitCode = 1;
  } finally {
    clearTimeout(overall);
    if (guest) await guest.stop().catch(() => guest?.kill());
    cleanup();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

main().catch((error: unknown) => {
  console.error(`guest:smoke failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
