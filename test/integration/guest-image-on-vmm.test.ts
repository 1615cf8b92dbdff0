/**
 * The product's guest image on our own VMM (KVM lab or hardware KVM): the
 * squashfs root on our virtio-blk, the agent over our userspace vsock, and
 * Chromium's window through our virtio-gpu. Opens the HTML fixture from an
 * item disk and checks its colours in the exported display.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { GuestManifest } from '../../guest-images/build.js';
import { cacheRoot } from '../../guest-images/cache.js';
import { AGENT_VSOCK_PORT } from '../../guest-images/config.js';
import { classifyItem, itemDiskImage, readItemFile } from '../../guest-images/item.js';
import { encodeFrame, FrameDecoder } from '../../guest-images/protocol.js';
import { parseVmConfig } from '../../vmm/config.js';
import { Vm } from '../../vmm/vm.js';
import { realKvmSkipReason } from './real-kvm.js';

const LATEST = join(cacheRoot(), 'guest', 'latest.json');
const FIXTURE = new URL('../../../test/fixtures/guest/smoke-page.html', import.meta.url).pathname;
const GUEST_CID = 3;
/** Chromium under nested virtualization on a software CPU takes minutes. */
const AGENT_READY_MS = 240_000;
const PAGE_ON_SCREEN_MS = 240_000;
/** The fixture's page background (#1040c0) and its top-left corner box (#ff8800). */
const PAGE_BLUE = [0x10, 0x40, 0xc0] as const;
const CORNER_ORANGE = [0xff, 0x88, 0x00] as const;

function skipReason(): string | undefined {
  const kvm = realKvmSkipReason();
  if (kvm) return kvm;
  if (!existsSync(LATEST)) return `the guest image is not built (${LATEST} missing): run npm run guest:build`;
  return undefined;
}

function coverage(pixels: Uint8Array, rgb: readonly [number, number, number]): number {
  let hits = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    if (
      Math.abs(pixels[i]! - rgb[0]) < 12 &&
      Math.abs(pixels[i + 1]! - rgb[1]) < 12 &&
      Math.abs(pixels[i + 2]! - rgb[2]) < 12
    ) {
      hits++;
    }
  }
  return hits / (pixels.length / 4);
}

test(
  'the guest image runs on our VMM: agent over vsock, a fixture page on our display',
  { skip: skipReason() },
  async (t) => {
    const manifest = JSON.parse(
      readFileSync((JSON.parse(readFileSync(LATEST, 'utf8')) as { manifest: string }).manifest, 'utf8'),
    ) as GuestManifest;
    const work = mkdtempSync(join(tmpdir(), 'belljar-guest-vmm-'));
    t.after(() => rmSync(work, { recursive: true, force: true }));
    const read = readItemFile(FIXTURE);
    assert.ok(read.ok);
    const item = classifyItem('smoke-page.html', read.bytes);
    assert.ok(item.ok);
    const itemDisk = join(work, 'item.img');
    writeFileSync(itemDisk, itemDiskImage(item, read.bytes));

    const started = performance.now();
    const seconds = () => ((performance.now() - started) / 1000).toFixed(1);
    let console = '';
    const vm = Vm.create(
      parseVmConfig({
        kernel: manifest.kernel.path,
        initrd: manifest.initramfs.path,
        cmdline: [...manifest.cmdline, 'reboot=k', 'pci=off', '8250.nr_uarts=1', 'belljar.agent=vsock'].join(' '),
        disks: [
          { path: manifest.rootfs.path, readOnly: true },
          { path: itemDisk, readOnly: true },
        ],
        memoryMiB: 1536,
        vcpus: 2,
        display: { width: 1024, height: 768 },
        input: true,
        vsockCid: GUEST_CID,
      }),
      { serialOutput: (bytes) => (console += Buffer.from(bytes).toString()) },
    );
    vm.start();
    try {
      const { gpu, vsock } = vm.devices;
      assert.ok(gpu && vsock);

      // The agent listens on vsock once the guest is up; connect when it is.
      const deadline = Date.now() + AGENT_READY_MS;
      let agent;
      while (!agent) {
        try {
          agent = await vsock.connect(AGENT_VSOCK_PORT, { timeoutMs: 5000 });
        } catch (error) {
          if (Date.now() > deadline)
            throw new Error(`no agent on vsock: ${(error as Error).message}\n${console}`, { cause: error });
          await sleep(2000);
        }
      }
      const messages: { type?: unknown; id?: unknown; state?: unknown }[] = [];
      const decoder = new FrameDecoder();
      agent.on('data', (chunk: Buffer) => messages.push(...(decoder.pushRaw(chunk) as typeof messages)));
      while (!messages.some((m) => m.type === 'ready')) {
        if (Date.now() > deadline) throw new Error(`the agent never said ready\n${console}`);
        await sleep(200);
      }
      t.diagnostic(`agent ready over vsock ${seconds()} s after VM creation`);

      agent.write(encodeFrame({ v: 1, type: 'open', id: 1, item: { disk: 'vdb' } }));
      const shown = Date.now() + PAGE_ON_SCREEN_MS;
      let blue = 0;
      let orange = 0;
      for (;;) {
        const shot = gpu.frames.snapshot();
        if (shot) {
          blue = coverage(shot.pixels, PAGE_BLUE);
          orange = coverage(shot.pixels, CORNER_ORANGE);
          // The page is blue with an orange quarter in the top-left corner.
          if (blue > 0.4 && orange > 0.15) break;
        }
        if (Date.now() > shown) break;
        await sleep(1000);
      }
      t.diagnostic(
        `fixture on our display ${seconds()} s after VM creation (blue ${blue.toFixed(2)}, orange ${orange.toFixed(2)})`,
      );
      assert.ok(blue > 0.4 && orange > 0.15, `the fixture's colours on screen (blue ${blue}, orange ${orange})`);
      const topLeft = gpu.frames.snapshot()!.pixels.subarray(0, 3);
      assert.ok(
        CORNER_ORANGE.every((v, k) => Math.abs(topLeft[k]! - v) < 12),
        `the top-left pixel is the corner's orange (${[...topLeft].join(',')})`,
      );
      agent.destroy();
    } finally {
      const exit = await vm.stop();
      assert.equal(exit.kind, 'stopped');
    }
  },
);
