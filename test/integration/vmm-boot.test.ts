/**
 * Our VMM boots Debian's kernel for real (KVM lab or hardware KVM): disks,
 * several vCPUs, and every way a guest can end, through the real CLI.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { EXIT_CODE } from '../../vmm/exit-codes.js';
import { realKvmSkipReason } from './real-kvm.js';
import { SIGNAL_INIT_REACHED, TEST_CMDLINE, testGuest, type TestGuest } from './guest-fixtures.js';

const VMM = new URL('../../vmm/cli.js', import.meta.url).pathname;
/** One boot in the lab takes 15–30 s; leave room for a slow, shared machine. */
const BOOT_TIMEOUT_MS = 150_000;

interface VmmRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runVmm(args: readonly string[], onStdout?: (text: string, kill: (signal: NodeJS.Signals) => void) => void) {
  return new Promise<VmmRun>((resolve, reject) => {
    const child = spawn(process.execPath, [VMM, 'run', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`the VMM did not finish within ${BOOT_TIMEOUT_MS / 1000} s; output so far:\n${stdout}\n${stderr}`),
      );
    }, BOOT_TIMEOUT_MS);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      onStdout?.(stdout, (signal) => child.kill(signal));
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function field(stdout: string, name: string): string | undefined {
  return new RegExp(`^${name}=(.*)$`, 'm').exec(stdout)?.[1]?.trim();
}

describe('the VMM boots a real Linux guest', { skip: realKvmSkipReason() }, () => {
  test('two disks, two vCPUs: the guest hashes the read-only disk and marks the read-write one', async (t) => {
    const marker = `BELLJAR-MARKER-${randomBytes(8).toString('hex')}`;
    const guest = await testGuest(`
${SIGNAL_INIT_REACHED}
echo "cpus=$(grep -c ^processor /proc/cpuinfo)"
echo "ro-sha256=$(sha256sum /dev/vda | cut -d' ' -f1)"
echo "ro-serial=$(cat /sys/block/vda/serial 2>/dev/null)"
echo "ro-flag=$(cat /sys/block/vda/ro)"
if dd if=/dev/zero of=/dev/vda bs=512 count=1 oflag=direct 2>/dev/null; then echo ro-write=accepted; else echo ro-write=refused; fi
printf '%s' '${marker}' | dd of=/dev/vdb bs=512 conv=sync oflag=direct 2>/dev/null
sync
echo "rng=$(head -c 16 /dev/hwrng | od -An -tx1 | tr -d ' \\n')"
poweroff -f
`);
    t.after(() => guest.dispose());
    const roDisk = guest.path('ro.img');
    const rwDisk = guest.path('rw.img');
    const roContent = randomBytes(4 * 1024 * 1024);
    writeFileSync(roDisk, roContent);
    writeFileSync(rwDisk, Buffer.alloc(1024 * 1024));
    const config = guest.path('vm.json');
    writeFileSync(
      config,
      JSON.stringify({
        kernel: guest.kernel.vmlinuz,
        initrd: guest.initrd,
        cmdline: TEST_CMDLINE,
        memoryMiB: 256,
        vcpus: 2,
        disks: [{ path: roDisk, readOnly: true, serial: 'belljar-ro' }, rwDisk],
      }),
    );

    const run = await runVmm(['--config', config, '--timings']);
    const timings = /vmm: timings (\{.*\})/.exec(run.stderr)?.[1];
    t.diagnostic(`timings ${timings ?? 'missing'}`);
    assert.equal(run.code, EXIT_CODE.poweroff, `exit code (stderr: ${run.stderr})`);
    assert.match(run.stderr, /the guest powered off/);
    assert.equal(field(run.stdout, 'cpus'), '2', 'the guest sees both vCPUs (MADT)');
    assert.equal(field(run.stdout, 'ro-sha256'), createHash('sha256').update(roContent).digest('hex'));
    assert.equal(field(run.stdout, 'ro-serial'), 'belljar-ro');
    assert.equal(field(run.stdout, 'ro-flag'), '1', 'the kernel knows the disk is read-only');
    assert.equal(field(run.stdout, 'ro-write'), 'refused');
    assert.match(field(run.stdout, 'rng') ?? '', /^[0-9a-f]{32}$/, 'virtio-rng gave 16 bytes');
    assert.equal(
      readFileSync(rwDisk).subarray(0, marker.length).toString(),
      marker,
      'the marker reached the host file',
    );
    assert.ok(timings && JSON.parse(timings).createToInitMs > 0, 'the guest signalled init reached');
  });

  describe('every way a guest ends has its own exit status', () => {
    let guest: TestGuest;
    const ending = async (script: string) => {
      guest = await testGuest(`${SIGNAL_INIT_REACHED}\n${script}`);
      try {
        return await runVmm(['--kernel', guest.kernel.vmlinuz, '--initrd', guest.initrd, '--cmdline', TEST_CMDLINE]);
      } finally {
        guest.dispose();
      }
    };
    before(() => undefined);
    after(() => guest?.dispose());

    test('reboot → exit 3', async () => {
      const run = await ending('reboot -f');
      assert.equal(run.code, EXIT_CODE.reboot, run.stderr);
      assert.match(run.stderr, /rebooted/);
    });

    test('kernel panic (panic=-1, pvpanic) → exit 5', async () => {
      const run = await ending('echo "about to panic"; echo c > /proc/sysrq-trigger; sleep 30');
      assert.equal(run.code, EXIT_CODE.panic, run.stderr);
      assert.match(run.stderr, /panicked/);
      assert.match(run.stdout, /about to panic/);
    });

    test('SIGTERM from the host → clean stop, exit 0', async () => {
      guest = await testGuest(`${SIGNAL_INIT_REACHED}\necho guest-idle\nwhile true; do sleep 1; done`);
      let sent = false;
      const run = await runVmm(
        ['--kernel', guest.kernel.vmlinuz, '--initrd', guest.initrd, '--cmdline', TEST_CMDLINE],
        (stdout, kill) => {
          if (!sent && stdout.includes('guest-idle')) {
            sent = true;
            kill('SIGTERM');
          }
        },
      );
      assert.ok(sent, 'the guest reached its idle loop');
      assert.equal(run.code, EXIT_CODE.poweroff, run.stderr);
      assert.match(run.stderr, /stopped by the host/);
    });
  });
});
