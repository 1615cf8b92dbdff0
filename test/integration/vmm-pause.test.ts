/**
 * Pausing a running VM stops its vCPUs (no guest output), resuming continues
 * it; a vCPU can be looked at (kicked out, read, let go) without harm.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseVmConfig } from '../../vmm/config.js';
import { Vm } from '../../vmm/vm.js';
import { SAMPLE_CODE_BYTES } from '../../vmm/vcpu/sample.js';
import { describeSample } from '../../vmm/sandbox/stall-watch.js';
import { realKvmSkipReason } from './real-kvm.js';
import { SIGNAL_INIT_REACHED, TEST_CMDLINE, testGuest } from './guest-fixtures.js';

const WAIT_FOR_GUEST_MS = 150_000;
const PAUSE_MS = 3_000;
const LOOKS = 20;
const LOOK_GAP_MS = 100;
const KICK_TIMEOUT_MS = 2_000;
/** Boot, the waits above and the looks, with room: a hang fails this test, not the whole lab run. */
const TEST_TIMEOUT_MS = 6 * 60_000;

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_FOR_GUEST_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

test(
  'pause stops the guest and resume continues it; looking at a vCPU does not disturb it',
  { skip: realKvmSkipReason(), timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const guest = await testGuest(`${SIGNAL_INIT_REACHED}
i=0; while [ $i -lt 100000 ]; do echo "tick $i"; i=$((i+1)); sleep 0.1; done`);
    t.after(() => guest.dispose());
    let output = '';
    const vm = Vm.create(
      parseVmConfig({ kernel: guest.kernel.vmlinuz, initrd: guest.initrd, cmdline: TEST_CMDLINE, memoryMiB: 128 }),
      { serialOutput: (bytes) => (output += Buffer.from(bytes).toString()) },
    );
    vm.start();
    const ticks = () => (output.match(/^tick \d+$/gm) ?? []).length;
    try {
      await until(() => ticks() >= 3, 'the guest to tick');
      vm.pause();
      await sleep(500); // let a tick already in flight land
      const paused = ticks();
      await sleep(PAUSE_MS);
      assert.equal(ticks(), paused, `no guest output while paused (${PAUSE_MS} ms)`);
      vm.resume();
      await until(() => ticks() >= paused + 3, 'the guest to tick again after resume');

      // The guest mostly sleeps between ticks: some looks find it idle in the kernel.
      const looks = [];
      for (let i = 0; i < LOOKS; i++) {
        looks.push(await vm.sampleVcpu(0, KICK_TIMEOUT_MS));
        await sleep(LOOK_GAP_MS);
      }
      const samples = looks.filter((l) => typeof l === 'object');
      assert.equal(samples.length, LOOKS, `every kick took the vCPU out of the guest: ${looks.join(', ')}`);
      const idle = samples.filter((s) => s.idle);
      assert.ok(idle.length > 0, 'some looks found the vCPU idle');
      assert.ok(
        idle.every((s) => s.cpl === 0 && s.interruptsOn),
        'an idle vCPU waits in the kernel for interrupts',
      );
      // A closer look reads the code at RIP: kernel code is always mapped (a user
      // RIP may sit on a page not yet faulted in).
      const closer = await vm.sampleVcpu(0, KICK_TIMEOUT_MS, true);
      assert.equal(typeof closer, 'object', `a closer look: ${String(closer)}`);
      const detail = typeof closer === 'object' ? closer.detail : undefined;
      assert.ok(detail, 'a closer look has the detail');
      if (typeof closer === 'object' && closer.cpl === 0) {
        assert.notEqual(detail.ripPhysical, null, 'kernel code is mapped');
        assert.equal(detail.code?.length, SAMPLE_CODE_BYTES);
      }
      const looked = ticks();
      await until(() => ticks() >= looked + 3, 'the guest to tick on after the looks');
      console.log(`vCPU looks: ${idle.length}/${LOOKS} idle, e.g. ${describeSample(idle[0]!)}`);
    } finally {
      const exit = await vm.stop();
      assert.equal(exit.kind, 'stopped');
    }
  },
);
