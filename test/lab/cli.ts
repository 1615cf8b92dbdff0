/**
 * `npm run lab -- <command> [args…]`: runs a command where a real KVM is.
 * With hardware virtualization on the host it runs directly; otherwise it
 * runs inside the KVM lab (QEMU software CPU with nested SVM). The choice is
 * printed. The command's exit code becomes this process's exit code.
 */
import { spawn } from 'node:child_process';
import { detectHostKvm } from './host-kvm.js';
import { LAB_EXIT, runInLab } from './lab.js';

const USAGE = `usage: npm run lab -- [--forward PORT]... <command> [args...]
  runs <command> where a real KVM is available
  --forward PORT   forward the host's 127.0.0.1:PORT to PORT inside the lab (serve on 0.0.0.0 there)`;

let argv = process.argv.slice(2);
const forwardPorts: number[] = [];
while (argv[0] === '--forward') {
  const port = Number(argv[1]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    console.error(`lab: --forward needs a port number, got ${JSON.stringify(argv[1] ?? '')}\n${USAGE}`);
    process.exit(2);
  }
  forwardPorts.push(port);
  argv = argv.slice(2);
}
if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') {
  console.error(USAGE);
  process.exit(argv.length === 0 ? 2 : 0);
}

const host = detectHostKvm();
const say = (line: string) => console.error(`[lab] ${line}`);

if (host.mode === 'direct') {
  say(`hardware KVM here (${host.reason}): running directly`);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: 'inherit' });
  child.on('error', (error) => {
    console.error(`[lab] cannot run ${argv[0]}: ${error.message}`);
    process.exit(127);
  });
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
} else {
  say(`no usable hardware KVM (${host.reason}): running in the KVM lab`);
  const abort = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => abort.abort());
  try {
    const result = await runInLab({ argv, signal: abort.signal, log: say, forwardPorts });
    const boot = result.bootSeconds === null ? 'n/a' : `${result.bootSeconds.toFixed(1)} s`;
    say(`exit ${result.exitCode}; L1 boot to command start ${boot}; total ${result.totalSeconds.toFixed(1)} s`);
    process.exitCode = result.exitCode;
  } catch (error) {
    say((error as Error).message);
    process.exitCode = LAB_EXIT.labFailure;
  }
}
