import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { PROBE_PORT, type ProbeResult } from '../../vmm/kvm/probe.js';
import { realKvmSkipReason } from './real-kvm.js';

const PROBE_CHILD = new URL('../support/probe-child.js', import.meta.url).pathname;
/** The probe takes milliseconds; a KVM_RUN that has not come back by then never will. */
const PROBE_TIMEOUT_MS = 60_000;

test(
  'the KVM lab gives a real /dev/kvm that runs a guest through our koffi bindings',
  { skip: realKvmSkipReason() },
  () => {
    assert.ok(existsSync('/dev/kvm'), '/dev/kvm exists');
    const child = spawnSync(process.execPath, [PROBE_CHILD], {
      encoding: 'utf8',
      timeout: PROBE_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    });
    assert.equal(
      child.signal,
      null,
      `the probe guest ended within ${PROBE_TIMEOUT_MS / 1000} s (stderr: ${child.stderr.trim() || 'none'})`,
    );
    assert.equal(child.status, 0, `the probe ran without error: ${child.stderr.trim()}`);
    const result = JSON.parse(child.stdout) as ProbeResult;
    assert.equal(result.output, 'OK', `the guest wrote "OK" to port 0x${PROBE_PORT.toString(16)}`);
    assert.equal(result.halted, true, 'the guest ended with HLT');
    assert.equal(result.exits, 3, 'two port writes and the HLT, nothing else');
    console.log(`probe guest: ${result.exits} exits in ${result.milliseconds.toFixed(2)} ms`);
  },
);
