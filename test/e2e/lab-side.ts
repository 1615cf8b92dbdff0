/**
 * The end-to-end test's half that needs a real KVM (run inside the KVM lab,
 * or directly on hardware KVM): the app's session service behind the test
 * bridge, exactly as `npm run bridge` runs it, plus a small diagnostics port
 * the test uses to check what the UI cannot show: that a closed sandbox's
 * VMM process is gone and its temp files are removed.
 *
 *   node dist/test/e2e/lab-side.js --port P --diag-port D --pick-file F [--host H]
 *
 * Diagnostics: GET /sandboxes → every sandbox seen so far with pid, alive,
 * tempDir, tempDirExists, timings; POST /quit → close all and exit.
 */
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BridgeServer } from '../../electron/bridge/bridge-server.js';
import type { SandboxSession } from '../../electron/sessions/sandbox-session.js';
import { SessionManager } from '../../electron/sessions/session-manager.js';
import { LAB_SIDE_READY, type SandboxReport } from './lab-side-contract.js';

const RENDERER_DIR = fileURLToPath(new URL('../../renderer', import.meta.url));

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    'diag-port': { type: 'string' },
    'pick-file': { type: 'string' },
    host: { type: 'string' },
  },
});
const host = values.host ?? '127.0.0.1';
const pickFile = values['pick-file'];
if (!values.port || !values['diag-port'] || !pickFile) {
  console.error('usage: lab-side --port P --diag-port D --pick-file F [--host H]');
  process.exit(2);
}

const sessions = new SessionManager();
const seen = new Map<string, SandboxSession>();
sessions.onChange((list) => {
  for (const summary of list) {
    const session = sessions.session(summary.id);
    if (session) seen.set(summary.id, session);
  }
});
const bridge = new BridgeServer(sessions, {
  rendererDir: RENDERER_DIR,
  host,
  port: Number(values.port),
  pickFile: () => pickFile,
});
await bridge.listen();

function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const diagnostics = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/sandboxes') {
    const report = [...seen.values()].map((s): SandboxReport => ({
      id: s.id,
      state: s.state,
      error: s.error,
      pid: s.pid,
      alive: alive(s.pid),
      tempDir: s.item.tempDir,
      tempDirExists: existsSync(s.item.tempDir),
      timings: s.timings,
      counts: s.counts,
      display: s.display,
      requestedDisplay: s.requestedDisplay,
      stderrTail: s.stderrTail,
    }));
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(report));
  } else if (req.method === 'POST' && req.url === '/quit') {
    res.writeHead(200).end('bye');
    void (async () => {
      await sessions.closeAll();
      // The guests' last console lines, for the test's failure report.
      for (const session of seen.values()) {
        if (session.consoleTail) console.log(`lab-side: ${session.id} console:\n${session.consoleTail.slice(-3000)}`);
      }
      await bridge.close();
      diagnostics.close();
      process.exit(0);
    })();
  } else {
    res.writeHead(404).end();
  }
});
await new Promise<void>((resolve) => diagnostics.listen(Number(values['diag-port']), host, resolve));
console.log(`${LAB_SIDE_READY} ${bridge.url}`);
