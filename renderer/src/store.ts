/**
 * The UI's state: the sandbox list as main reports it, which tab is shown,
 * recent errors in plain words, and whether the connection to main was lost.
 * Everything else (frames, input) bypasses the store: it is too hot for React.
 */
import { create } from 'zustand';
import type { SandboxId, SandboxSummary } from '../../electron/contract/ipc.js';

export type TabId = 'home' | SandboxId;

export interface RecentError {
  readonly key: number;
  readonly at: number;
  readonly message: string;
  /** Set for a failed sandbox, so each failure is recorded once. */
  readonly sandboxId?: SandboxId;
}

/** How many errors the home view keeps. */
export const MAX_RECENT_ERRORS = 8;

interface UiState {
  readonly sandboxes: readonly SandboxSummary[];
  readonly activeTab: TabId;
  readonly errors: readonly RecentError[];
  readonly connectionError: string | null;
  setSandboxes(list: readonly SandboxSummary[]): void;
  /** Adds a sandbox not yet listed (an `open` result may arrive before the list event). */
  upsertSandbox(sandbox: SandboxSummary): void;
  showTab(tab: TabId): void;
  reportError(message: string, sandboxId?: SandboxId): void;
  clearErrors(): void;
  setConnectionError(message: string): void;
}

let errorKey = 0;

function withError(errors: readonly RecentError[], message: string, sandboxId?: SandboxId): readonly RecentError[] {
  const entry: RecentError = { key: ++errorKey, at: Date.now(), message, ...(sandboxId ? { sandboxId } : {}) };
  return [entry, ...errors].slice(0, MAX_RECENT_ERRORS);
}

export const useUi = create<UiState>((set) => ({
  sandboxes: [],
  activeTab: 'home',
  errors: [],
  connectionError: null,
  setSandboxes: (list) =>
    set((state) => {
      let errors = state.errors;
      for (const s of list) {
        if (s.state === 'failed' && !errors.some((e) => e.sandboxId === s.id)) {
          errors = withError(errors, `${s.title}: ${s.error ?? 'the sandbox failed.'}`, s.id);
        }
      }
      // A tab whose sandbox is gone falls back to home.
      const activeTab =
        state.activeTab === 'home' || list.some((s) => s.id === state.activeTab) ? state.activeTab : 'home';
      return { sandboxes: list, errors, activeTab };
    }),
  upsertSandbox: (sandbox) =>
    set((state) =>
      state.sandboxes.some((s) => s.id === sandbox.id) ? {} : { sandboxes: [...state.sandboxes, sandbox] },
    ),
  showTab: (activeTab) => set({ activeTab }),
  reportError: (message, sandboxId) => set((state) => ({ errors: withError(state.errors, message, sandboxId) })),
  clearErrors: () => set({ errors: [] }),
  setConnectionError: (connectionError) => set({ connectionError }),
}));

/** Sandboxes that get a tab: everything not yet closed. */
export function visibleSandboxes(list: readonly SandboxSummary[]): readonly SandboxSummary[] {
  return list.filter((s) => s.state !== 'closed');
}
