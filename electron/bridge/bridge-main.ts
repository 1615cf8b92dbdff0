/**
 * `npm run bridge`: the app's session service and the built renderer on a
 * local web port, for a browser instead of Electron (tests, and machines
 * where Electron's binary is not available). Where KVM cannot run a guest,
 * run it inside the KVM lab: `npm run lab -- node dist/electron/bridge/bridge-main.js`.
 *
 *   --port N               (default 0: any free port; the URL is printed)
 *   --host H               (default 127.0.0.1)
 *   --pick-file PATH       what "Open a file" opens (a browser has no host file dialog)
 *   --allow-for-tests A    ip:port the egress proxy allows though private (repeatable; tests only)
 *   --agent-timeout S      seconds a guest may take to start (default 300)
 *   --memory MIB           guest RAM per sandbox
 * Stops on SIGINT/SIGTERM, closing every sandbox first.
 */
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { SessionManager } from '../sessions/session-manager.js';
import { BridgeServer } from './bridge-server.js';

const RENDERER_DIR = fileURLToPath(new URL('../../renderer', import.meta.url));
/** Printed once listening; tests wait for it. */
export const BRIDGE_READY_PREFIX = 'bridge: listening on ';

function positive(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) {
    process.stderr.write(`bridge: ${flag} needs a whole number, got ${JSON.stringify(text)}\n`);
    process.exit(2);
  }
  return value;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        'pick-file': { type: 'string' },
        'allow-for-tests': { type: 'string', multiple: true },
        'agent-timeout': { type: 'string' },
        memory: { type: 'string' },
      },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`bridge: ${(error as Error).message}\n`);
    process.exit(2);
  }
  const agentTimeout = positive(values['agent-timeout'], '--agent-timeout');
  const memoryMiB = positive(values.memory, '--memory');
  const port = positive(values.port, '--port');
  const pickFile = values['pick-file'];
  const sessions = new SessionManager({
    ...(values['allow-for-tests'] ? { allowForTests: values['allow-for-tests'] } : {}),
    ...(agentTimeout === undefined ? {} : { agentTimeoutMs: agentTimeout * 1000 }),
    ...(memoryMiB === undefined ? {} : { memoryMiB }),
  });
  const bridge = new BridgeServer(sessions, {
    rendererDir: RENDERER_DIR,
    ...(values.host ? { host: values.host } : {}),
    ...(port === undefined ? {} : { port }),
    ...(pickFile ? { pickFile: () => pickFile } : {}),
  });
  await bridge.listen();
  // Timings of each sandbox, for the logs.
  const reported = new Set<string>();
  sessions.onChange((list) => {
    for (const summary of list) {
      const session = sessions.session(summary.id);
      if (session && summary.state === 'running') {
        const t = session.timings;
        if (t.firstContentMs !== undefined && !reported.has(summary.id)) {
          reported.add(summary.id);
          console.log(`bridge: ${summary.id} timings ${JSON.stringify(t)}`);
        }
      }
    }
  });
  console.log(`${BRIDGE_READY_PREFIX}${bridge.url}`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await sessions.closeAll();
    await bridge.close();
    console.log('bridge: stopped');
    process.exit(0);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void stop());
}

await main();
