/**
 * The one IPC contract shared by the main process, the preload and the
 * renderer. It imports nothing, so every process can include it.
 */

/** The channel names of the preload API. */
export const IPC_CHANNELS = {
  listSandboxes: 'belljar:list-sandboxes',
} as const;

export type SandboxState = 'starting' | 'running' | 'closing' | 'closed' | 'failed';

export interface SandboxSummary {
  readonly id: string;
  readonly title: string;
  readonly state: SandboxState;
}

/** What the preload exposes to the renderer as `window.belljar`. */
export interface BelljarApi {
  listSandboxes(): Promise<readonly SandboxSummary[]>;
}
