/** Plain-words formatting for the UI. */
import type { BootStage, SandboxState, SandboxSummary } from '../../electron/contract/ipc.js';

export const STATE_WORDS: Record<SandboxState, string> = {
  starting: 'Starting',
  running: 'Running',
  closing: 'Closing',
  closed: 'Closed',
  failed: 'Failed',
};

export const STAGE_WORDS: Record<BootStage, string> = {
  preparing: 'Preparing the sandbox',
  booting: 'Starting the microVM',
  'guest-ready': 'The microVM is up',
  opening: 'Opening the item',
  shown: 'Shown',
};

export function formatUptime(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min ${s} s`;
  return `${s} s`;
}

/** Guest RAM, and the VMM process's resident memory when main reports it. */
export function formatMemory(s: SandboxSummary): string {
  return s.rssMiB === undefined ? `${s.memoryMiB} MiB` : `${s.memoryMiB} MiB (${s.rssMiB} MiB in use)`;
}

export function describeItem(s: SandboxSummary): string {
  return s.item.kind === 'file' ? `File: ${s.item.name}` : `Web address: ${s.item.url}`;
}

/**
 * An error as plain words: Electron wraps rejections from main as
 * "Error invoking remote method 'x': Error: message"; the user needs the message.
 */
export function plainError(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return (
    text.replace(/^Error invoking remote method '[^']*': /, '').replace(/^[A-Za-z]*Error: /, '') || 'Unknown error.'
  );
}
