/**
 * Runs the probe guest and prints its result as JSON. The lab's self-test
 * runs this in a child process: KVM_RUN blocks the thread that calls it, so
 * only a process it runs in can be stopped if it never comes back.
 */
import { runProbeGuest } from '../../vmm/kvm/probe.js';

process.stdout.write(JSON.stringify(runProbeGuest()));
