import { test } from 'node:test';
import assert from 'node:assert/strict';
import { L1_CRASH, L1_PANICKED_LINE, labFault } from '../support/lab-faults.js';

const STUCK_LINE =
  'sandbox: vCPU 1 has not come out of the guest for 60 s and was at the same instruction each of 3 looks 100 ms apart: ' +
  '0xffffffffc06de20c (kernel, interrupts on; pending 0xec, in service -; code 89 02 c3)';

test('each known lab fault is named; other failures are not faults', () => {
  assert.equal(
    labFault({ labOutput: '[ 94.3] Kernel panic - not syncing: Fatal exception' }),
    "the lab's L1 kernel panicked",
  );
  assert.equal(
    labFault({ labOutput: `[ 42.2]  svm_vcpu_run+0x1cf/0x720 [kvm_amd]\n[lab] ${L1_PANICKED_LINE}\n` }),
    "the lab's L1 kernel panicked",
    'the lab saw the panic through pvpanic, before L1 printed its message',
  );
  assert.equal(
    labFault({ sandboxError: "the sandbox's processor reset (triple fault)" }),
    "the sandbox failed: the sandbox's processor reset (triple fault)",
  );
  assert.equal(
    labFault({ guestConsole: 'watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [chromium:301]' }),
    "the guest's kernel reported a CPU stuck (soft lockup)",
  );
  assert.equal(
    labFault({ vmmStderr: `sandbox: earlier line\n${STUCK_LINE}\nsandbox: later line\n` }),
    `a guest vCPU stuck at one instruction (${STUCK_LINE})`,
    'the whole line of the watch, its closer look included',
  );
  assert.equal(
    labFault({
      guestConsole:
        '[  148.573715] rcu: \tPossible timer handling issue on cpu=1 timer-softirq=3055\n' +
        '[  148.573715] rcu: rcu_preempt kthread starved for 5252 jiffies!',
    }),
    "the guest's kernel reported a CPU whose timer stopped firing (RCU stall)",
  );
  assert.equal(
    labFault({ guestConsole: '[   28.3] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:' }),
    null,
    'an RCU stall report alone (a slow lab) is not the timer fault',
  );
  assert.equal(labFault({}), null);
  assert.equal(
    labFault({
      sandboxError: 'kernel: cannot open /nonexistent',
      guestConsole: 'Run /init as init process',
      vmmStderr: 'sandbox: virtio-gpu queue 0: 3 requests not taken for over 5 s',
      labOutput: 'ok',
    }),
    null,
    'a real failure, a device queue left untaken included, is not a lab fault',
  );
});

test("L1's own crash reports are told from its command's output", () => {
  const bug = '[   49.711563] BUG: TASK stack guard page was hit at 00000000c81dc866';
  assert.equal(L1_CRASH.exec(`lab-side: ready http://127.0.0.1:4000/\n${bug}\n[   49.7] stack guard page`)?.[0], bug);
  assert.equal(L1_CRASH.exec('[   12.5] general protection fault, probably for non-canonical address')?.index, 0);
  // A guest's soft lockup is the guest's fault, and a line that only mentions a BUG is nobody's.
  assert.equal(L1_CRASH.exec('[   22.1] watchdog: BUG: soft lockup - CPU#0 stuck for 22s!'), null);
  assert.equal(L1_CRASH.exec('lab-side: BUG: in a message'), null);
});
