import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { Mailbox, SLOT } from '../../vmm/vcpu/mailbox.js';

// A worker stands in for a vCPU thread: it makes many synchronous calls, and
// the main thread answers them the way VcpuThread does. Every call must be
// answered exactly once, in order, with no lost wake-ups.
const MAILBOX_MODULE = new URL('../../vmm/vcpu/mailbox.js', import.meta.url).href;
const WORKER = `
const { workerData, parentPort } = require('node:worker_threads');
import(workerData.module).then(({ Mailbox, ACCESS_KIND }) => {
  const mailbox = new Mailbox(workerData.buffer);
  let ok = 0;
  for (let i = 0; i < workerData.calls; i++) {
    const data = mailbox.dataView(1);
    data[0] = i & 0xff;
    mailbox.call(ACCESS_KIND.pio, false, 0x3f8 + (i % 8), 1);
    if (data[0] === ((i * 3) & 0xff)) ok++;
  }
  parentPort.postMessage(ok);
});
`;

test('the vCPU mailbox answers every synchronous call exactly once', async () => {
  const mailbox = Mailbox.create();
  const calls = 2000;
  const worker = new Worker(WORKER, {
    eval: true,
    workerData: { buffer: mailbox.buffer, calls, module: MAILBOX_MODULE },
  });
  const done = new Promise<number>((resolve) => worker.on('message', resolve));
  let handled = 0;
  let answered = 0;
  let finished = false;
  void done.then(() => (finished = true));
  while (!finished) {
    const wait = Atomics.waitAsync(mailbox.slots, SLOT.request, handled);
    if (wait.async) await Promise.race([wait.value, done]);
    const id = Atomics.load(mailbox.slots, SLOT.request);
    if (id === handled) continue;
    const access = mailbox.pending();
    assert.equal(access.address, 0x3f8 + (answered % 8));
    access.data[0] = (access.data[0]! * 3) & 0xff;
    handled = id;
    answered++;
    mailbox.answer(id);
  }
  assert.equal(await done, calls, 'every answer reached the worker intact');
  assert.equal(answered, calls);
  await worker.terminate();
});
