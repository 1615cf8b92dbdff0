/**
 * The KVM lab itself, run from the host, when L1 fails the way it does
 * (docs/benchmarks.md): a command the caller finds hung is stopped with
 * evidence (L1's stacks over its serial console, then QEMU's view of L1's
 * CPUs) and the result says `unresponsive`; an L1 whose kernel panics ends
 * at once and the result says `panicked`. Each boots a real L1 (under a
 * minute here); skipped where the integration tests run directly on
 * hardware KVM, since there is no lab there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectHostKvm } from '../lab/host-kvm.js';
import { L1_RESTARTED } from '../lab/l1-machine.js';
import { LAB_EXIT, runInLab } from '../lab/lab.js';
import { L1_FROZE } from '../support/lab-faults.js';

/** L1 boots in well under a minute; the stop adds the stack wait and three looks. */
const LAB_TIMEOUT_MS = 5 * 60_000;
const STARTED = 'hung-lab: started';
const NO_LAB = detectHostKvm().mode === 'direct' ? 'hardware KVM here: tests run directly, without the lab' : undefined;

test(
  "a lab command the caller finds hung is stopped, with L1's stacks and CPUs logged",
  {
    skip: NO_LAB,
    timeout: LAB_TIMEOUT_MS + 60_000,
  },
  async (t) => {
    const hung = new AbortController();
    let output = '';
    const log: string[] = [];
    // A command that never ends on its own: the test plays the caller that finds it hung.
    const result = await runInLab({
      argv: ['sh', '-c', `echo '${STARTED}'; exec sleep 3600`],
      timeoutMs: LAB_TIMEOUT_MS,
      hung: hung.signal,
      output: (chunk) => {
        output += chunk;
        if (output.includes(STARTED)) hung.abort();
      },
      log: (line) => log.push(line),
    });
    t.diagnostic(`L1 boot ${result.bootSeconds?.toFixed(1)} s; stopped after ${result.totalSeconds.toFixed(1)} s`);
    assert.equal(result.unresponsive, true, `the result says unresponsive: ${JSON.stringify(result)}`);
    assert.equal(result.exitCode, LAB_EXIT.labFailure);
    // The stack request went over L1's console: sysrq's own headers are in L1's output.
    assert.match(output, /sysrq: Show backtrace of all active CPUs/, `L1 printed its CPUs' stacks:\n${output}`);
    assert.match(output, /sysrq: Show Blocked State/, 'L1 listed its blocked tasks');
    // Three looks at both of L1's CPUs, each named (the idle L1 halts in the kernel).
    const looks = log.filter((line) => /^lab: L1 look \d\/3: CPU [01] at [0-9a-f]{16} \(/.test(line));
    assert.equal(looks.length, 6, `six CPU looks:\n${log.join('\n')}`);
    // It answered its console, so it is not taken for a frozen L1.
    assert.ok(!log.some((line) => L1_FROZE.test(line)), 'a live L1 is not said to have frozen');
  },
);

test(
  'a lab whose L1 kernel panics ends at once, and says so',
  {
    skip: NO_LAB,
    timeout: LAB_TIMEOUT_MS + 60_000,
  },
  async (t) => {
    let output = '';
    const log: string[] = [];
    // sysrq's crash command panics L1's kernel (the command runs as root in L1).
    const result = await runInLab({
      argv: ['sh', '-c', 'echo c > /proc/sysrq-trigger; exec sleep 3600'],
      timeoutMs: LAB_TIMEOUT_MS,
      output: (chunk) => (output += chunk),
      log: (line) => log.push(line),
    });
    t.diagnostic(`L1 boot ${result.bootSeconds?.toFixed(1)} s; ended after ${result.totalSeconds.toFixed(1)} s`);
    assert.equal(result.panicked, true, `the result says panicked: ${JSON.stringify(result)}\n${log.join('\n')}`);
    assert.equal(result.exitCode, LAB_EXIT.labFailure);
    assert.match(output, /Kernel panic - not syncing: sysrq triggered crash/, "L1's panic message is in the output");
    // Not rebooted: the command ran once.
    assert.ok(!output.includes(L1_RESTARTED), 'L1 did not restart');
  },
);
