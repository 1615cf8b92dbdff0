import { create } from 'zustand';
import type { SandboxSummary } from '../../electron/contract/ipc.js';

interface SandboxStore {
  sandboxes: readonly SandboxSummary[];
  setSandboxes(list: readonly SandboxSummary[]): void;
}

export const useSandboxStore = create<SandboxStore>((set) => ({
  sandboxes: [],
  setSandboxes: (sandboxes) => set({ sandboxes }),
}));
