/**
 * `npm run bench:display [-- --iterations N --width W --height H]`: host CPU
 * cost of virtio-gpu's frame export, the budget being ≤ 2 ms for a full
 * 1280×800 frame. No VM needed: a guest driver (the unit tests' harness)
 * programs the device through its virtio-mmio transport exactly like Linux's
 * virtio_gpu driver with a dumb buffer (1000 scattered 4 KiB pages of
 * XRGB8888), so the numbers include every copy a real frame costs.
 *
 * Measured, each as median and p95 over the iterations (wall time of one
 * synchronous call on the VMM's main thread, which is its CPU time; the CPU
 * column is process.cpuUsage() over the whole loop divided by the count):
 *   - export full frame: `takeFrame()` + `release()` after a full-screen flush
 *     (copy out of the host resource, convert to RGBA8888);
 *   - export small rect: the same for a 64×16 rectangle (a blinking caret, a word);
 *   - guest full frame: the guest's TRANSFER_TO_HOST_2D + RESOURCE_FLUSH of
 *     the whole screen through the control queue (gather from guest RAM);
 *   - export full frame (JS): the export without WebAssembly SIMD, for
 *     comparison (the fallback path);
 *   - snapshotPng: the test helper, for information.
 * The 2 ms budget is judged on CPU time per export and on the median; p95
 * wall time also counts preemption by other load on the host.
 * A table goes to stdout and, as the last line, one JSON object.
 */
import { parseArgs } from 'node:util';
import { GuestMemory } from '../../vmm/memory/guest-memory.js';
import { VirtioMmioTransport } from '../../vmm/devices/virtio/mmio-transport.js';
import { VirtioGpu } from '../../vmm/devices/virtio/gpu/gpu.js';
import { simdAvailable } from '../../vmm/devices/virtio/gpu/pixel-convert.js';
import {
  VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING,
  VIRTIO_GPU_CMD_RESOURCE_CREATE_2D,
  VIRTIO_GPU_CMD_RESOURCE_FLUSH,
  VIRTIO_GPU_CMD_SET_SCANOUT,
  VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D,
  VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
  VIRTIO_GPU_RESP_OK_NODATA,
} from '../../vmm/devices/virtio/gpu/protocol.js';
import { FakeIrq, GuestDriver } from '../unit/virtio-harness.js';
import type { GuestRing } from '../unit/virtio-harness.js';

const BUDGET_MS = 2;
const PAGE = 4096;
const CTRL_RING = 0x1000;
const CURSOR_RING = 0x3000;
const CMD = 0x4000;
const RESP = 0x5000;
const ENTRIES = 0x1_0000;
const FB = 0x100_0000;

const { values } = parseArgs({
  options: {
    iterations: { type: 'string', default: '300' },
    width: { type: 'string', default: '1280' },
    height: { type: 'string', default: '800' },
  },
});
const iterations = Number(values.iterations);
const width = Number(values.width);
const height = Number(values.height);
if (!(iterations >= 10) || !(width >= 64) || !(height >= 64)) {
  throw new Error('usage: display.js [--iterations N≥10] [--width W≥64] [--height H≥64]');
}

interface Stat {
  readonly median: number;
  readonly p95: number;
  readonly cpu: number;
  readonly n: number;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Run `prepare` (untimed) then `op` (timed) `n` times after a warm-up. */
function measure(n: number, prepare: () => void, op: () => void): Stat {
  for (let i = 0; i < Math.min(20, n); i++) {
    prepare();
    op();
  }
  const times: number[] = [];
  let cpu = 0;
  for (let i = 0; i < n; i++) {
    prepare();
    const cpuBefore = process.cpuUsage();
    const start = performance.now();
    op();
    times.push(performance.now() - start);
    const used = process.cpuUsage(cpuBefore);
    cpu += (used.user + used.system) / 1000;
  }
  times.sort((a, b) => a - b);
  return { median: quantile(times, 0.5), p95: quantile(times, 0.95), cpu: cpu / n, n };
}

/** A device behind virtio-mmio with a guest driver, a scanout of `width`×`height` and a patterned framebuffer. */
function makeGuest(simd: boolean) {
  const fbBytes = width * height * 4;
  const pages = Math.ceil(fbBytes / PAGE);
  const memory = GuestMemory.allocate(FB + pages * PAGE + 2 * PAGE);
  const gpu = new VirtioGpu({ width, height, export: { simd } });
  const transport = new VirtioMmioTransport(gpu, memory, new FakeIrq());
  const driver = new GuestDriver(transport, memory);
  const [ctrl] = driver.bringUp([CTRL_RING, CURSOR_RING]);
  const ring: GuestRing = ctrl!;

  const send = (type: number, fields: readonly (number | bigint)[], extra?: Uint8Array): void => {
    const bytes = new Uint8Array(24 + fields.reduce<number>((n, f) => n + (typeof f === 'bigint' ? 8 : 4), 0));
    const view = new DataView(bytes.buffer);
    view.setUint32(0, type, true);
    let at = 24;
    for (const f of fields) {
      if (typeof f === 'bigint') view.setBigUint64(at, f, true);
      else view.setUint32(at, f, true);
      at += typeof f === 'bigint' ? 8 : 4;
    }
    memory.write(CMD, bytes);
    const chain = [{ addr: CMD, len: bytes.length, writable: false }];
    if (extra) {
      memory.write(ENTRIES, extra);
      chain.push({ addr: ENTRIES, len: extra.length, writable: false });
    }
    chain.push({ addr: RESP, len: 64, writable: true });
    ring.addChain(chain);
    driver.notify(0);
    const answer = memory.readU32(RESP);
    if (answer !== VIRTIO_GPU_RESP_OK_NODATA)
      throw new Error(`command 0x${type.toString(16)}: 0x${answer.toString(16)}`);
  };

  // A shmem dumb buffer: one entry per page, in scattered (reversed) order.
  const entries = new Uint8Array(pages * 16);
  const entryView = new DataView(entries.buffer);
  for (let i = 0; i < pages; i++) {
    entryView.setBigUint64(i * 16, BigInt(FB + (pages - 1 - i) * PAGE), true);
    entryView.setUint32(i * 16 + 8, PAGE, true);
  }
  const fb = memory.slice(FB, pages * PAGE);
  for (let i = 0; i < fb.length; i++) fb[i] = (i * 7 + (i >> 12)) & 0xff;

  send(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, width, height]);
  send(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [1, pages], entries);
  send(VIRTIO_GPU_CMD_SET_SCANOUT, [0, 0, width, height, 0, 1]);
  const transferAll = (): void => send(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [0, 0, width, height, 0n, 1, 0]);
  const flush = (x: number, y: number, w: number, h: number): void =>
    send(VIRTIO_GPU_CMD_RESOURCE_FLUSH, [x, y, w, h, 1, 0]);
  transferAll();
  gpu.frames.takeFrame()?.release();
  return { gpu, transferAll, flush, pages };
}

const exportOnce = (gpu: VirtioGpu) => (): void => {
  const frame = gpu.frames.takeFrame();
  if (!frame || frame.rects.length === 0) throw new Error('expected a frame with damage');
  frame.release();
};

const simd = makeGuest(true);
const js = makeGuest(false);
const smallW = Math.min(64, width);
const smallH = Math.min(16, height);

const results = {
  exportFullFrame: measure(iterations, () => simd.flush(0, 0, width, height), exportOnce(simd.gpu)),
  exportSmallRect: measure(iterations, () => simd.flush(100, 200, smallW, smallH), exportOnce(simd.gpu)),
  guestFullFrame: measure(
    iterations,
    () => {},
    () => {
      simd.transferAll();
      simd.flush(0, 0, width, height);
    },
  ),
  exportFullFrameJs: measure(
    Math.max(10, Math.floor(iterations / 3)),
    () => js.flush(0, 0, width, height),
    exportOnce(js.gpu),
  ),
  snapshotPng: measure(
    10,
    () => {},
    () => void simd.gpu.snapshotPng(),
  ),
};
simd.gpu.frames.takeFrame()?.release();

const ms = (v: number): string => v.toFixed(3).padStart(8);
console.log(
  `virtio-gpu frame export, ${width}x${height} XRGB8888 → RGBA8888, ${simd.pages} backing pages, ` +
    `SIMD ${simdAvailable() ? 'available' : 'NOT available'}, Node ${process.version}`,
);
console.log(
  `${'operation'.padEnd(36)}${'median ms'.padStart(10)}${'p95 ms'.padStart(10)}${'cpu ms'.padStart(10)}     n`,
);
const rows: [string, Stat][] = [
  [`export full frame (${width}x${height})`, results.exportFullFrame],
  [`export small rect (${smallW}x${smallH})`, results.exportSmallRect],
  ['guest transfer + flush, full frame', results.guestFullFrame],
  ['export full frame, JS fallback', results.exportFullFrameJs],
  ['snapshotPng (zlib level 6)', results.snapshotPng],
];
for (const [name, s] of rows) {
  console.log(`${name.padEnd(36)}  ${ms(s.median)}  ${ms(s.p95)}  ${ms(s.cpu)}  ${String(s.n).padStart(4)}`);
}
// The budget is about host CPU: judge it on CPU time per export and the median wall time. The p95
// wall time also counts time the process was descheduled (other load on the host) and is shown for that.
const full = results.exportFullFrame;
const within = full.cpu <= BUDGET_MS && full.median <= BUDGET_MS;
console.log(
  `budget: full-frame export ≤ ${BUDGET_MS} ms of host CPU → ${within ? 'met' : 'NOT met'} ` +
    `(cpu ${full.cpu.toFixed(3)} ms, median ${full.median.toFixed(3)} ms, p95 ${full.p95.toFixed(3)} ms)`,
);
const round3 = (s: Stat) => ({
  medianMs: Math.round(s.median * 1000) / 1000,
  p95Ms: Math.round(s.p95 * 1000) / 1000,
  cpuMs: Math.round(s.cpu * 1000) / 1000,
  n: s.n,
});
console.log(
  JSON.stringify({
    bench: 'display',
    width,
    height,
    pixelFormat: 'rgba8888',
    simd: simdAvailable(),
    budgetMs: BUDGET_MS,
    withinBudget: within,
    exportFullFrame: round3(results.exportFullFrame),
    exportSmallRect: round3(results.exportSmallRect),
    guestFullFrame: round3(results.guestFullFrame),
    exportFullFrameJs: round3(results.exportFullFrameJs),
    snapshotPng: round3(results.snapshotPng),
  }),
);
