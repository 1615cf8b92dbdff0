import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { runProbeGuest, PROBE_PORT } from '../../vmm/kvm/probe.js';
import { realKvmSkipReason } from './real-kvm.js';

test(
  'the KVM lab gives a real /dev/kvm that runs a guest through our koffi bindings',
  { skip: realKvmSkipReason() },
  () => {
    assert.ok(existsSync('/dev/kvm'), '/dev/kvm exists');
    const result = runProbeGuest();
    assert.equal(result.output, 'OK', `the guest wrote "OK" to port 0x${PROBE_PORT.toString(16)}`);
    assert.equal(result.halted, true, 'the guest ended with HLT');
    assert.equal(result.exits, 3, 'two port writes and the HLT, nothing else');
    console.log(`probe guest: ${result.exits} exits in ${result.milliseconds.toFixed(2)} ms`);
  },
);
