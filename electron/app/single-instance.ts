/**
 * One Belljar per user: a second launch hands its command line and working
 * directory to the running app (through Electron's single-instance lock) and
 * exits; the running app opens a sandbox for each item.
 */

/** What one launch brings: its argv and the directory it was started in. */
export interface LaunchData {
  readonly argv: readonly string[];
  readonly cwd: string;
}

/** The part of Electron's `app` this module uses. */
export interface SingleInstanceApp {
  requestSingleInstanceLock(additionalData?: Record<string, unknown>): boolean;
  on(
    event: 'second-instance',
    listener: (event: unknown, argv: string[], workingDirectory: string, additionalData: unknown) => void,
  ): unknown;
}

const MAX_ARGS = 1024;
const MAX_ARG_CHARS = 16_384;

function isLaunchData(value: unknown): value is LaunchData {
  if (typeof value !== 'object' || value === null) return false;
  const { argv, cwd } = value as Record<string, unknown>;
  return (
    typeof cwd === 'string' &&
    cwd.length <= MAX_ARG_CHARS &&
    Array.isArray(argv) &&
    argv.length <= MAX_ARGS &&
    argv.every((arg) => typeof arg === 'string' && arg.length <= MAX_ARG_CHARS)
  );
}

/**
 * The second instance's launch: its own `additionalData` when well-formed
 * (Electron warns that the `argv` it reports may be reordered and have
 * Chromium switches appended), else the reported argv and directory.
 */
export function readLaunchData(additionalData: unknown, argv: readonly string[], cwd: string): LaunchData {
  if (isLaunchData(additionalData)) return { argv: [...additionalData.argv], cwd: additionalData.cwd };
  return { argv: [...argv], cwd };
}

/**
 * Takes the lock (passing this launch along for the running app) and routes
 * later launches to `onLaunch`. Returns false in a second instance, which
 * should then quit.
 */
export function claimSingleInstance(
  app: SingleInstanceApp,
  own: LaunchData,
  onLaunch: (launch: LaunchData) => void,
): boolean {
  if (!app.requestSingleInstanceLock({ argv: [...own.argv], cwd: own.cwd })) return false;
  app.on('second-instance', (_event, argv, workingDirectory, additionalData) => {
    onLaunch(readLaunchData(additionalData, argv, workingDirectory));
  });
  return true;
}
