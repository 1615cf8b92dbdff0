/** Pausing a running VM stops its vCPUs (no guest output), resuming continues it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseVmConfig } from '../../vmm/config.js';
import { Vm } from '../../vmm/vm.js';
import { realKvmSkipReason } from './real-kvm.js';
import { SIGNAL_INIT_REACHED, TEST_CMDLINE, testGuest } from './guest-fixtures.js';

const WAIT_FOR_GUEST_MS = 150_000;
const PAUSE_MS = 3_000;

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_FOR_GUEST_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

test('pause stops the guest and resume continues it', { skip: realKvmSkipReason() }, async (t) => {
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
  } finally {
    const exit = await vm.stop();
    assert.equal(exit.kind, 'stopped');
  }
});
