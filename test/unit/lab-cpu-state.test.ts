import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  describeCpus,
  monitorCommand,
  parseRegisters,
  readSymbols,
  summarizeApic,
  symbolize,
} from '../lab/l1-cpu-state.js';
import { QEMU } from '../lab/lab.js';

test("QEMU's monitor reports each CPU, and its local APIC, of a machine held at reset", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'belljar-monitor-'));
  const socket = join(dir, 'monitor.sock');
  // -S: the CPUs never start, so they sit at the reset vector; CPU 1 waits for its start-up IPI.
  const qemu = spawn(
    QEMU,
    ['-M', 'microvm', '-nodefaults', '-no-user-config', '-display', 'none', '-S', '-smp', '2'].concat([
      '-monitor',
      `unix:${socket},server=on,wait=off`,
    ]),
    { stdio: 'ignore' },
  );
  t.after(() => {
    qemu.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  for (let i = 0; i < 100 && !existsSync(socket); i++) await sleep(50);
  const cpus = parseRegisters(await monitorCommand(socket, 'info registers -a'));
  assert.deepEqual(
    cpus.map((c) => ({ ...c, rip: c.rip.toString(16) })),
    [
      { cpu: 0, rip: 'fff0', cpl: 0, halted: false },
      { cpu: 1, rip: 'fff0', cpl: 0, halted: true },
    ],
  );
  assert.deepEqual(describeCpus(cpus, null), [
    'CPU 0 at 000000000000fff0 (no symbols), CPL 0',
    'CPU 1 at 000000000000fff0 (no symbols), CPL 0, halted',
  ]);
  // A CPU's local APIC at reset: timer masked and idle, nothing pending or in service.
  assert.equal(
    summarizeApic(await monitorCommand(socket, 'info lapic 1')),
    'LVTT 0x00010000 active-hi edge masked one-shot Fixed (vec 0); ' +
      'Timer DCR=0x0 (divide by 2) initial_count = 0 current_count = 0; ISR (none); IRR (none); ' +
      'APR 0x00 TPR 0x00 DFR 0x0f LDR 0x00 PPR 0x00',
  );
});

test('a monitor that is not there is an error, not a hang', async () => {
  await assert.rejects(monitorCommand(join(tmpdir(), 'belljar-no-such-monitor.sock'), 'info registers -a'), /ENOENT/);
});

test('long-mode registers parse; addresses are named from a symbol table', () => {
  const dir = mkdtempSync(join(tmpdir(), 'belljar-map-'));
  try {
    const map = join(dir, 'kallsyms');
    writeFileSync(
      map,
      [
        'ffffffff81000000 T _stext',
        'ffffffff81001000 t native_safe_halt',
        'ffffffff81001040 D some_data',
        'ffffffff81002000 T __svm_vcpu_run',
        'ffffffffc0239000 t svm_vcpu_run\t[kvm_amd]',
        '',
      ].join('\n'),
    );
    const symbols = readSymbols(map);
    assert.deepEqual(symbols.names, ['_stext', 'native_safe_halt', '__svm_vcpu_run', 'svm_vcpu_run [kvm_amd]']);
    const registers = parseRegisters(
      'CPU#0\nRAX=0000000000000000\nRIP=ffffffff8100100b RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\n' +
        'CPU#1\nRIP=ffffffff81002abc RFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0\n' +
        'CPU#2\nRIP=00007f0012345678 RFL=00000202 [-------] CPL=3 II=0 A20=1 SMM=0 HLT=0\n',
    );
    assert.deepEqual(describeCpus(registers, symbols), [
      'CPU 0 at ffffffff8100100b (native_safe_halt+0xb), CPL 0, halted',
      'CPU 1 at ffffffff81002abc (__svm_vcpu_run+0xabc), CPL 0',
      'CPU 2 at 00007f0012345678 (user space), CPL 3',
    ]);
    assert.equal(symbolize(symbols, 0xffffffffc02393d7n, 0), 'svm_vcpu_run+0x3d7 [kvm_amd]');
    assert.equal(symbolize(null, 0xffffffffc06de20cn, 0), 'module code');
    // The monitor's text is parsed defensively: a block missing a field, or noise, gives no CPU.
    assert.deepEqual(parseRegisters('CPU#0\nRIP=ffffffff8100100b CPL=0\nCPU#x\ngarbage\n(qemu) '), []);
    assert.deepEqual(parseRegisters(''), []);
    assert.equal(symbolize(symbols, 0xffffffff80000000n, 0), "below the kernel's text");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
