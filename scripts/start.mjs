// `npm start`: opens the Belljar window with Electron. Electron's binary is
// fetched on first start (npm's install-script policy keeps `npm install` from
// downloading it); where it cannot be fetched, say what is missing and how to
// get it, instead of a stack trace.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

function electronBinary() {
  let dir;
  try {
    dir = dirname(require.resolve('electron/package.json'));
  } catch {
    return { dir: null, binary: null };
  }
  const pathFile = join(dir, 'path.txt');
  const binary = existsSync(pathFile) ? join(dir, 'dist', readFileSync(pathFile, 'utf8').trim()) : null;
  return { dir, binary: binary && existsSync(binary) ? binary : null };
}

let { dir, binary } = electronBinary();
if (dir && !binary) {
  console.log('start: fetching the Electron binary (first start only)…');
  const fetch = spawnSync(process.execPath, [join(dir, 'install.js')], {
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 300_000,
  });
  ({ binary } = electronBinary());
  if (!binary) {
    const reason =
      fetch.stderr
        ?.toString()
        .split('\n')
        .find((l) => l.trim()) ?? 'unknown error';
    console.error(`
Belljar cannot open its window here: Electron's binary is missing and could not be downloaded
(${reason.trim()}).

On a Linux desktop with internet access, 'npm install && npm start' fetches it once and opens the app.
What works without it on this machine:
  npm run bridge                the same app in a browser: open the printed URL in Chromium
                                (where /dev/kvm cannot run guests, inside the KVM lab: npm run lab --
                                 --forward 8080 node dist/electron/bridge/bridge-main.js --host 0.0.0.0 --port 8080)
  npm test                      the full test suite (the UI runs in Debian's Chromium)
  npm run vmm -- run --help     the microVM monitor
  npm run lab -- <command>      a command inside the KVM lab
`);
    process.exit(1);
  }
}
if (!dir) {
  console.error("Belljar cannot open its window: the 'electron' package is not installed. Run 'npm install' first.");
  process.exit(1);
}

// Every sandbox boots the guest image: build it on first start (a few minutes, cached after).
if (!existsSync(join(process.env.BELLJAR_CACHE ?? join(homedir(), '.cache', 'belljar'), 'guest', 'latest.json'))) {
  console.log('start: building the sandbox image (first start only; a few minutes)…');
  const build = spawnSync(process.execPath, ['dist/guest-images/build.js'], { stdio: 'inherit' });
  if (build.status !== 0) {
    console.error(`
Belljar could not build its sandbox image (see above). It needs Debian's packages
(mmdebstrap, squashfs-tools, busybox-static, kmod, cpio): 'sudo scripts/install-deps.sh' installs them.
The app opens anyway; opening an item will say the image is missing.
`);
  }
}

const child = spawn(binary, ['.', ...process.argv.slice(2)], { stdio: 'inherit' });
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
