/**
 * Sandboxes never outlive the UI: quitting waits for every sandbox to be
 * destroyed (VMM processes ended, temp files removed) before the app exits,
 * and closing the window closes the sandboxes shown in it.
 */
import type { SessionService } from '../sessions/session-service.js';
import type { Preventable } from './hardening.js';

/** How long quitting waits for the sandboxes before exiting anyway. */
export const QUIT_TIMEOUT_MS = 10_000;

export interface QuittableApp {
  on(event: 'before-quit' | 'will-quit', listener: (event: Preventable) => void): unknown;
  quit(): void;
  exit(exitCode?: number): void;
}

export interface QuitGate {
  /** True from the first quit request on: launches arriving now are ignored. */
  readonly quitting: boolean;
}

/**
 * Holds the first quit (before-quit, or will-quit when Electron skips it),
 * closes all sandboxes, then quits for real. A close that hangs is cut off
 * after `timeoutMs`, and the app exits with status 1 so it never hangs.
 */
export function installQuitGate(
  app: QuittableApp,
  sessions: Pick<SessionService, 'closeAll'>,
  log: (message: string) => void,
  timeoutMs = QUIT_TIMEOUT_MS,
): QuitGate {
  let state: 'running' | 'closing' | 'closed' = 'running';
  const onQuit = (event: Preventable) => {
    if (state === 'closed') return;
    event.preventDefault();
    if (state === 'closing') return;
    state = 'closing';
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    Promise.race([sessions.closeAll().then(() => 'closed' as const), timedOut])
      .then(
        (outcome) => {
          if (outcome === 'timeout') {
            log(`quit: sandboxes still closing after ${timeoutMs} ms; exiting anyway`);
            return 1;
          }
          return 0;
        },
        (error: unknown) => {
          log(`quit: closing the sandboxes failed: ${error instanceof Error ? error.message : String(error)}`);
          return 1;
        },
      )
      .then((exitCode) => {
        clearTimeout(timer);
        state = 'closed';
        if (exitCode === 0) app.quit();
        else app.exit(exitCode);
      });
  };
  app.on('before-quit', onQuit);
  app.on('will-quit', onQuit);
  return {
    get quitting() {
      return state !== 'running';
    },
  };
}

export interface ClosableWindow {
  once(event: 'closed', listener: () => void): unknown;
}

/** The window shows every sandbox (as tabs): when it closes, they all close. */
export function closeSandboxesWithWindow(
  window: ClosableWindow,
  sessions: Pick<SessionService, 'closeAll'>,
  log: (message: string) => void,
): void {
  window.once('closed', () => {
    sessions.closeAll().catch((error: unknown) => {
      log(`closing the window's sandboxes failed: ${error instanceof Error ? error.message : String(error)}`);
    });
  });
}

export interface SignalSource {
  once(signal: 'SIGINT' | 'SIGTERM', listener: () => void): unknown;
}

/** Ctrl-C in a terminal or a service stop goes through the same quit (and its gate). */
export function quitOnSignals(process: SignalSource, app: Pick<QuittableApp, 'quit'>): void {
  process.once('SIGINT', () => app.quit());
  process.once('SIGTERM', () => app.quit());
}
