/** What the user can do, shared by buttons and keyboard shortcuts; failures become plain-words errors. */
import { useMemo } from 'react';
import type { BelljarApi, SandboxId, SandboxSummary } from '../../electron/contract/ipc.js';
import { useApi } from './api-context.js';
import { plainError } from './format.js';
import { useUi, visibleSandboxes, type TabId } from './store.js';

/** The input the Ctrl+Shift+L shortcut focuses. */
export const URL_INPUT_ID = 'url-input';

export interface Actions {
  /** Host file dialog, then a sandbox for the choice. */
  openFile(): Promise<void>;
  /** Opens a checked http(s) URL; resolves to an error message (already recorded) or null. */
  openUrl(url: string): Promise<string | null>;
  close(id: SandboxId): Promise<void>;
  focusUrlField(): void;
  /** Next (+1) or previous (-1) tab, wrapping; home counts as the first tab. */
  cycleTab(delta: 1 | -1): void;
}

function showOpened(sandbox: SandboxSummary): void {
  const ui = useUi.getState();
  ui.upsertSandbox(sandbox);
  ui.showTab(sandbox.id);
}

export function tabOrder(): TabId[] {
  return ['home', ...visibleSandboxes(useUi.getState().sandboxes).map((s) => s.id)];
}

export function createActions(api: BelljarApi): Actions {
  const ui = () => useUi.getState();
  return {
    async openFile() {
      try {
        const sandbox = await api.pickAndOpenFile();
        if (sandbox) showOpened(sandbox);
      } catch (error) {
        ui().reportError(`Could not open the file: ${plainError(error)}`);
      }
    },
    async openUrl(url) {
      try {
        showOpened(await api.open({ kind: 'url', url }));
        return null;
      } catch (error) {
        const message = `Could not open ${url}: ${plainError(error)}`;
        ui().reportError(message);
        return message;
      }
    },
    async close(id) {
      if (ui().activeTab === id) ui().showTab('home');
      try {
        await api.close(id);
      } catch (error) {
        ui().reportError(`Could not close the sandbox: ${plainError(error)}`);
      }
    },
    focusUrlField() {
      ui().showTab('home');
      // The home view mounts on the next render.
      requestAnimationFrame(() => document.getElementById(URL_INPUT_ID)?.focus());
    },
    cycleTab(delta) {
      const order = tabOrder();
      const at = order.indexOf(ui().activeTab);
      const next = order[(at + delta + order.length) % order.length] ?? 'home';
      ui().showTab(next);
    },
  };
}

export function useActions(): Actions {
  const api = useApi();
  return useMemo(() => createActions(api), [api]);
}
