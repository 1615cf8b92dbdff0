// The whole test suite, as CI and `npm test` run it: build, type check, lint,
// unit and renderer tests, the guest image (build, then a smoke boot under
// QEMU), the KVM lab's own tests, then the integration and end-to-end tests
// where a real KVM is (the KVM lab on machines without hardware
// virtualization). Ends with one summary line,
// "N passed, N failed, N skipped", and a non-zero exit code on any failure.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';

const RESULTS = 'dist/test-results';

/** A stage that runs Node's test runner on one folder of dist/test, with a TAP copy for the summary. */
function nodeTests(folder) {
  const tap = `${RESULTS}/${folder}.tap`;
  return {
    argv: [
      'node',
      '--test',
      '--test-reporter=spec',
      '--test-reporter-destination=stdout',
      '--test-reporter=tap',
      `--test-reporter-destination=${tap}`,
      `dist/test/${folder}/`,
    ],
    tap,
  };
}

const stages = [
  { name: 'build', argv: ['node', 'scripts/build.mjs'] },
  { name: 'typecheck', argv: ['npx', 'tsc', '-p', 'tsconfig.json', '--noEmit'] },
  {
    name: 'typecheck (renderer)',
    argv: ['npx', 'tsc', '-p', 'renderer/tsconfig.json', '--noEmit'],
    when: 'renderer/tsconfig.json',
  },
  { name: 'lint', argv: ['npx', 'eslint', '--max-warnings=0', '.'] },
  { name: 'format', argv: ['npx', 'prettier', '--check', '--log-level=warn', '.'] },
  { name: 'unit tests', ...nodeTests('unit') },
  {
    // The renderer in Debian's Chromium (Playwright), fed a recorded frame stream: fast UI tests.
    name: 'renderer tests (Chromium)',
    ...nodeTests('renderer'),
    when: 'test/renderer',
  },
  { name: 'guest image build', argv: ['node', 'dist/guest-images/build.js'] },
  { name: 'guest image smoke test (QEMU)', argv: ['node', 'dist/guest-images/smoke.js'], plainSummary: true },
  {
    // The KVM lab's own behaviour, from the host (a real L1 under QEMU).
    name: 'lab tests (QEMU)',
    ...nodeTests('lab-host'),
    when: 'test/lab-host',
  },
  {
    name: 'integration tests (real KVM)',
    argv: ['node', 'dist/test/lab/run-integration.js'],
    tap: `${RESULTS}/integration.tap`,
  },
  {
    // The whole app (test bridge + real VMMs in the lab) driven through Chromium.
    name: 'end-to-end tests (Chromium + real KVM)',
    ...nodeTests('e2e'),
    when: 'test/e2e',
  },
];

/** Runs a command with its output passed through; returns its exit status and its stdout. */
function run(argv) {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      output += chunk;
    });
    child.on('error', (error) => resolve({ status: 127, output: String(error) }));
    child.on('close', (status, signal) => resolve({ status: status ?? signal, output }));
  });
}

/** Counts from a plain "N passed, N failed[, N skipped]" line. */
function plainCounts(output) {
  const match = [...output.matchAll(/(\d+) passed, (\d+) failed(?:, (\d+) skipped)?/g)].pop();
  return match ? { pass: Number(match[1]), fail: Number(match[2]), skipped: Number(match[3] ?? 0) } : null;
}

function tapCounts(path) {
  const counts = { pass: 0, fail: 0, skipped: 0 };
  if (!existsSync(path)) return null;
  const text = readFileSync(path, 'utf8');
  for (const key of Object.keys(counts)) {
    const match = new RegExp(`^# ${key} (\\d+)$`, 'm').exec(text);
    if (match) counts[key] = Number(match[1]);
  }
  return counts;
}

const total = { pass: 0, fail: 0, skipped: 0 };
const failedStages = [];
const started = Date.now();
for (const stage of stages) {
  if (stage.when && !existsSync(stage.when)) continue;
  if (stage.tap) {
    mkdirSync(RESULTS, { recursive: true });
    rmSync(stage.tap, { force: true });
  }
  console.log(`\n=== ${stage.name} ===`);
  const t0 = Date.now();
  const result = await run(stage.argv);
  const seconds = ((Date.now() - t0) / 1000).toFixed(1);
  const ok = result.status === 0;
  console.log(`=== ${stage.name}: ${ok ? 'ok' : `FAILED (exit ${result.status})`} in ${seconds} s ===`);
  if (stage.tap || stage.plainSummary) {
    const counts = stage.tap ? tapCounts(stage.tap) : plainCounts(result.output);
    if (counts) for (const key of Object.keys(total)) total[key] += counts[key];
    // A stage that failed without reporting a failing test still counts as one failure.
    if (!ok && (!counts || counts.fail === 0)) total.fail += 1;
  } else if (!ok) {
    total.fail += 1;
  }
  if (!ok) failedStages.push(stage.name);
}

console.log(
  `\ntest: ${((Date.now() - started) / 1000).toFixed(0)} s; failed stages: ${failedStages.join(', ') || 'none'}`,
);
console.log(`${total.pass} passed, ${total.fail} failed, ${total.skipped} skipped`);
process.exitCode = failedStages.length === 0 ? 0 : 1;
