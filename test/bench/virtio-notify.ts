/**
 * `npm run bench:notify`: does ioeventfd pay off? Boots the same guest with
 * virtqueue notifications delivered through ioeventfds and through ordinary
 * MMIO exits, interleaved, and has it read a disk with small direct I/O
 * (one virtqueue notification per 4 KiB request). Prints the guest's read
 * throughput and the VMM's exit count per mode; last line JSON.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { TEST_CMDLINE, testGuest } from '../integration/guest-fixtures.js';

const DISK_MIB = 16;
const REQUEST_BYTES = 4096;
const RUN_TIMEOUT_MS = 300_000;
const VMM = new URL('../../vmm/cli.js', import.meta.url).pathname;

const { values } = parseArgs({ options: { runs: { type: 'string', default: '2' } } });
const runs = Number(values.runs);

const guest = await testGuest(`
start=$(cut -d' ' -f1 /proc/uptime)
dd if=/dev/vda of=/dev/null bs=${REQUEST_BYTES} count=${(DISK_MIB * 1024 * 1024) / REQUEST_BYTES} iflag=direct 2>/dev/null
end=$(cut -d' ' -f1 /proc/uptime)
echo "BENCH-READ $start $end"
poweroff -f
`);
const disk = guest.path('disk.img');
writeFileSync(disk, Buffer.alloc(DISK_MIB * 1024 * 1024, 0x5a));

interface Sample {
  readonly mode: 'ioeventfd' | 'mmio-exit';
  readonly seconds: number;
  readonly mibPerSecond: number;
  readonly exits: number;
}

function runOnce(mode: Sample['mode']): Sample {
  const config = guest.path(`${mode}.json`);
  writeFileSync(
    config,
    JSON.stringify({
      kernel: guest.kernel.vmlinuz,
      initrd: guest.initrd,
      cmdline: TEST_CMDLINE,
      memoryMiB: 256,
      disks: [{ path: disk, readOnly: true }],
      rng: false,
      ioeventfd: mode === 'ioeventfd',
    }),
  );
  const child = spawnSync(process.execPath, [VMM, 'run', '--config', config, '--timings'], {
    encoding: 'utf8',
    timeout: RUN_TIMEOUT_MS,
  });
  const read = /BENCH-READ ([\d.]+) ([\d.]+)/.exec(child.stdout);
  const timings = /vmm: timings (\{.*\})/.exec(child.stderr)?.[1];
  if (child.status !== 0 || !read || !timings) {
    throw new Error(`${mode} run failed (exit ${child.status}):\n${child.stdout}\n${child.stderr}`);
  }
  const seconds = Number(read[2]) - Number(read[1]);
  return { mode, seconds, mibPerSecond: DISK_MIB / seconds, exits: (JSON.parse(timings) as { exits: number }).exits };
}

const samples: Sample[] = [];
try {
  for (let i = 0; i < runs; i++) {
    for (const mode of ['ioeventfd', 'mmio-exit'] as const) {
      const sample = runOnce(mode);
      samples.push(sample);
      console.log(
        `${mode.padEnd(10)} run ${i + 1}: ${DISK_MIB} MiB in ${sample.seconds.toFixed(2)} s guest time = ${sample.mibPerSecond.toFixed(1)} MiB/s, ${sample.exits} exits to userspace`,
      );
    }
  }
} finally {
  guest.dispose();
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const summary = Object.fromEntries(
  (['ioeventfd', 'mmio-exit'] as const).map((mode) => {
    const of = samples.filter((s) => s.mode === mode);
    return [mode, { mibPerSecond: median(of.map((s) => s.mibPerSecond)), exits: median(of.map((s) => s.exits)) }];
  }),
);
const speedup = summary['ioeventfd']!.mibPerSecond / summary['mmio-exit']!.mibPerSecond;
console.log(`ioeventfd / mmio-exit throughput: ${speedup.toFixed(2)}x`);
console.log(
  JSON.stringify({ bench: 'virtio-notify', diskMiB: DISK_MIB, requestBytes: REQUEST_BYTES, runs, ...summary, speedup }),
);
