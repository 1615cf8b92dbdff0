/**
 * Runs the integration tests (test/integration) where a real KVM is: directly
 * on hardware KVM, otherwise in one KVM lab session. Node's test runner writes
 * a TAP copy of its results to `dist/test-results/integration.tap` (the
 * working directory is shared writable with the lab) for the summary.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { detectHostKvm } from './host-kvm.js';
import { runInLab, LAB_EXIT } from './lab.js';

export const INTEGRATION_TAP = 'dist/test-results/integration.tap';
/** The integration suite runs the lab's slow scenarios one after another. */
const LAB_SUITE_TIMEOUT_MS = 40 * 60_000;
/** Every integration test keeps L1 busy: one that uses almost no CPU for this long has frozen. */
const L1_FROZEN_AFTER_MS = 3 * 60_000;
/**
 * Every integration test prints progress well within this (the slowest wait,
 * for the product guest's page, is 6 minutes), and every test has a timeout
 * below it: a suite silent for longer has hung with L1, not in a test.
 */
const L1_SILENT_AFTER_MS = 10 * 60_000;
/** Lab runs of the suite when L1 panics, freezes or hangs (test/support/lab-faults.ts). */
const MAX_LAB_ATTEMPTS = 2;

const testCommand = [
  'node',
  '--test',
  '--test-concurrency=1',
  '--test-reporter=spec',
  '--test-reporter-destination=stdout',
  '--test-reporter=tap',
  `--test-reporter-destination=${INTEGRATION_TAP}`,
  'dist/test/integration/',
];

mkdirSync('dist/test-results', { recursive: true });
rmSync(INTEGRATION_TAP, { force: true });
const host = detectHostKvm();
if (host.mode === 'direct') {
  console.log(`integration: hardware KVM here (${host.reason}): running directly`);
  const result = spawnSync(testCommand[0]!, testCommand.slice(1), { stdio: 'inherit' });
  process.exitCode = result.status ?? 1;
} else {
  console.log(`integration: no usable hardware KVM (${host.reason}): running in the KVM lab`);
  const abort = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => abort.abort());
  try {
    for (let attempt = 1; ; attempt++) {
      rmSync(INTEGRATION_TAP, { force: true });
      const result = await runInLab({
        argv: testCommand,
        timeoutMs: LAB_SUITE_TIMEOUT_MS,
        frozenAfterMs: L1_FROZEN_AFTER_MS,
        silentAfterMs: L1_SILENT_AFTER_MS,
        signal: abort.signal,
        log: (line) => console.log(line),
      });
      const boot = result.bootSeconds === null ? 'n/a' : `${result.bootSeconds.toFixed(1)} s`;
      console.log(
        `integration: lab exit ${result.exitCode}, L1 boot ${boot}, total ${result.totalSeconds.toFixed(1)} s`,
      );
      process.exitCode = result.exitCode;
      // L1 itself died, froze or hung: the suite's results are lost, not failed. Run it again (reported).
      const l1Fault = result.frozen
        ? "the lab's L1 froze"
        : result.silent
          ? "the lab's L1 hung (the suite printed nothing)"
          : result.panicked
            ? "the lab's L1 kernel panicked"
            : null;
      if (result.exitCode !== LAB_EXIT.labFailure || l1Fault === null || attempt >= MAX_LAB_ATTEMPTS) break;
      console.log(`integration: ${l1Fault} (a known lab fault); running the suite again`);
    }
  } catch (error) {
    console.error(`integration: ${(error as Error).message}`);
    process.exitCode = LAB_EXIT.labFailure;
  }
}
