import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  describeSample,
  QUIET_VCPU_MS,
  SAMPLES_PER_LOOK,
  STALL_WATCH_MS,
  StallWatch,
  type StallWatchTarget,
} from '../../vmm/sandbox/stall-watch.js';
import { codeAt, SAMPLE_CODE_BYTES, type VcpuLook } from '../../vmm/vcpu/sample.js';
import { GuestMemory } from '../../vmm/memory/guest-memory.js';

const SAMPLE = { cpl: 0, interruptsOn: true, idle: false };
/** Stuck on one instruction with interrupts on and the timer's vector pending: it never takes it. */
const STUCK = { ...SAMPLE, rip: 0xffffffff81001234n };
const STUCK_CLOSER = {
  ...STUCK,
  detail: {
    interruptShadow: false,
    pendingVectors: [0x22, 0xec],
    inServiceVectors: [0xec],
    ripPhysical: 0x1001234n,
    code: Uint8Array.of(0xf3, 0x90, 0xeb, 0xfc),
  },
};
const USER_CODE = { ...SAMPLE, rip: 0x401000n, cpl: 3 };
const MORE_USER_CODE = { ...SAMPLE, rip: 0x402000n, cpl: 3 };
const IDLE = { ...SAMPLE, rip: 0xffffffff81c0ffeen, idle: true };

/** A VM as the watch sees it; the tests move its counters by hand. */
class FakeVm implements StallWatchTarget {
  mailboxes = [
    { request: 0, response: 0, runs: 10 },
    { request: 0, response: 0, runs: 10 },
  ];
  queue = { pending: 0, taken: 0 };
  looks: VcpuLook[][] = [[], []];
  /** vCPU ids looked at, `+` for a closer look. */
  sampled: string[] = [];

  queueProgress(device: string, index: number) {
    return device === 'gpu' && index === 0 ? this.queue : undefined;
  }

  /** A fresh copy each time, as the Vm gives. */
  get vcpuMailboxes() {
    return this.mailboxes.map((m) => ({ ...m }));
  }

  async sampleVcpu(id: number, _timeoutMs: number, detail = false): Promise<VcpuLook> {
    this.sampled.push(`${id}${detail ? '+' : ''}`);
    const mailbox = this.mailboxes[id]!;
    mailbox.runs++; // a look takes the vCPU out of the guest once
    return this.looks[id]!.shift() ?? 'not-running';
  }
}

function watch(vm: FakeVm, pointer = { pendingEvents: 0, deliveredEvents: 0 }) {
  const said: string[] = [];
  const w = new StallWatch(
    vm,
    {
      queues: { device: 'gpu', indexes: [0, 1] },
      inputs: [{ name: 'pointer', stats: () => pointer }],
      say: (l) => said.push(l),
    },
    0,
  );
  return { w, said };
}

test('a vCPU access left unanswered for a whole interval is said once per look', async () => {
  const vm = new FakeVm();
  const { w, said } = watch(vm);
  vm.mailboxes[1] = { request: 7, response: 6, runs: 10 };
  await w.check(STALL_WATCH_MS);
  assert.deepEqual(said, [], 'a fresh access is not a stall');
  await w.check(2 * STALL_WATCH_MS);
  assert.deepEqual(said, ['sandbox: vCPU 1 has waited over 5 s for its access 7 to be answered']);
});

test('display requests the device leaves untaken are said; taken ones are not', async () => {
  const vm = new FakeVm();
  const { w, said } = watch(vm);
  vm.queue = { pending: 2, taken: 5 };
  await w.check(STALL_WATCH_MS);
  vm.queue = { pending: 3, taken: 6 };
  await w.check(2 * STALL_WATCH_MS);
  assert.deepEqual(said, [], 'the device took one meanwhile');
  await w.check(3 * STALL_WATCH_MS);
  assert.deepEqual(said, ['sandbox: gpu queue 0: 3 requests not taken for over 5 s']);
});

test('a vCPU quiet for long and at the same instruction each look is said, with its APIC and code', async () => {
  const vm = new FakeVm();
  const { w, said } = watch(vm);
  vm.looks[0] = [STUCK, STUCK, STUCK, STUCK_CLOSER];
  vm.mailboxes[1]!.runs = 11; // vCPU 1 keeps coming out: never looked at
  await w.check(QUIET_VCPU_MS - 1);
  assert.deepEqual(vm.sampled, [], 'not quiet long enough yet');
  vm.mailboxes[1]!.runs = 12;
  await w.check(QUIET_VCPU_MS);
  assert.deepEqual(vm.sampled, [...Array<string>(SAMPLES_PER_LOOK).fill('0'), '0+'], 'then one closer look');
  assert.deepEqual(said, [
    `sandbox: vCPU 0 has not come out of the guest for ${QUIET_VCPU_MS / 1000} s and was at the same instruction each of 3 looks ` +
      '100 ms apart: 0xffffffff81001234 (kernel, interrupts on; pending 0x22 0xec, in service 0xec; code f3 90 eb fc)',
  ]);
  said.length = 0;
  await w.check(QUIET_VCPU_MS + STALL_WATCH_MS);
  assert.deepEqual(said, [], 'the quiet time starts afresh after a look');
});

test('a busy vCPU (found at different places) and an idle one are left alone', async () => {
  const vm = new FakeVm();
  const { w, said } = watch(vm);
  vm.looks = [
    [IDLE, IDLE, IDLE],
    [USER_CODE, MORE_USER_CODE, USER_CODE],
  ];
  await w.check(QUIET_VCPU_MS);
  assert.deepEqual(vm.sampled, ['0', '0', '0', '1', '1', '1'], 'both were looked at, neither closer');
  assert.deepEqual(said, []);
});

test('a sample in an interrupt shadow, in user space or with unmapped code says so', () => {
  assert.equal(
    describeSample({
      ...USER_CODE,
      interruptsOn: false,
      detail: { interruptShadow: true, pendingVectors: [], inServiceVectors: [], ripPhysical: null, code: null },
    }),
    '0x401000 (user, interrupts off, in an interrupt shadow; pending -, in service -; code unmapped)',
  );
});

test('a vCPU that does not leave the guest when kicked is said; one that is not running is not', async () => {
  const vm = new FakeVm();
  const { w, said } = watch(vm);
  vm.looks = [
    [STUCK, 'did-not-leave', STUCK],
    [STUCK, 'not-running'],
  ];
  await w.check(QUIET_VCPU_MS);
  assert.deepEqual(said, ['sandbox: vCPU 0 did not leave the guest within 2 s of a kick']);
});

test('input events the guest leaves untaken are said; ones it takes are not', async () => {
  const pointer = { pendingEvents: 0, deliveredEvents: 40 };
  const { w, said } = watch(new FakeVm(), pointer);
  pointer.pendingEvents = 4;
  await w.check(STALL_WATCH_MS);
  pointer.pendingEvents = 2;
  pointer.deliveredEvents = 42;
  await w.check(2 * STALL_WATCH_MS);
  assert.deepEqual(said, [], 'the guest took two meanwhile');
  await w.check(3 * STALL_WATCH_MS);
  assert.deepEqual(said, ['sandbox: pointer: 2 input events not taken by the guest for over 5 s']);
});

test('code bytes are read only where all of them are in RAM, whatever address the guest gives', () => {
  const memory = GuestMemory.allocate(0x1000);
  memory.write(0x100, Uint8Array.of(0xf3, 0x90));
  assert.deepEqual(codeAt(memory, 0x100n)?.subarray(0, 2), Uint8Array.of(0xf3, 0x90));
  assert.equal(codeAt(memory, 0x100n)?.length, SAMPLE_CODE_BYTES);
  assert.equal(codeAt(memory, BigInt(0x1000 - SAMPLE_CODE_BYTES))?.length, SAMPLE_CODE_BYTES, 'the last whole run');
  assert.equal(codeAt(memory, BigInt(0x1000 - SAMPLE_CODE_BYTES + 1)), null, 'straddling the end of RAM');
  assert.equal(codeAt(memory, 0xfee0_0000n), null, 'an MMIO window past RAM');
  assert.equal(codeAt(memory, 1n << 60n), null, 'beyond 2^53');
  assert.equal(codeAt(memory, -1n), null);
});
