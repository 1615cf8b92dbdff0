import { useEffect, useMemo, useState } from 'react';
import { useActions } from './actions.js';
import { useApi } from './api-context.js';
import { HomeView } from './components/HomeView.js';
import { SandboxView } from './components/SandboxView.js';
import { panelDomId, TabBar, tabDomId } from './components/TabBar.js';
import { matchShortcut } from './shortcuts.js';
import { useUi, visibleSandboxes } from './store.js';

/** One window: a tab strip (home + a tab per sandbox) and the shown tab's panel. */
export function App() {
  const api = useApi();
  const actions = useActions();
  const all = useUi((s) => s.sandboxes);
  const activeTab = useUi((s) => s.activeTab);
  const connectionError = useUi((s) => s.connectionError);
  const sandboxes = useMemo(() => visibleSandboxes(all), [all]);
  const active = sandboxes.find((s) => s.id === activeTab);
  /** Bumped when a shortcut switches tabs, so the tab strip takes the focus. */
  const [tabFocus, setTabFocus] = useState(0);

  useEffect(() => api.onSandboxes((list) => useUi.getState().setSandboxes(list)), [api]);

  useEffect(() => {
    document.title = active ? `${active.title} — sandboxed — Belljar` : 'Belljar';
  }, [active]);

  // Shortcuts run in the capture phase, before the display forwards keys to the guest.
  useEffect(() => {
    const onKeyDown = (e: KeyboardEvent) => {
      const inDisplay = document.activeElement?.classList.contains('display-canvas') ?? false;
      const action = matchShortcut(e, inDisplay);
      if (!action) return;
      e.preventDefault();
      e.stopPropagation();
      const current = useUi.getState().activeTab;
      switch (action) {
        case 'open-file':
          void actions.openFile();
          break;
        case 'open-url':
          actions.focusUrlField();
          break;
        case 'close-tab':
          if (current !== 'home') void actions.close(current);
          break;
        case 'home':
          useUi.getState().showTab('home');
          setTabFocus((n) => n + 1);
          break;
        case 'next-tab':
        case 'previous-tab':
          actions.cycleTab(action === 'next-tab' ? 1 : -1);
          setTabFocus((n) => n + 1);
          break;
      }
    };
    window.addEventListener('keydown', onKeyDown, { capture: true });
    return () => window.removeEventListener('keydown', onKeyDown, { capture: true });
  }, [actions]);

  const tab = active ? active.id : 'home';
  return (
    <div className="app">
      {connectionError !== null && (
        <div className="connection-error" role="alert">
          {connectionError}
        </div>
      )}
      <TabBar focusRequest={tabFocus} />
      <main
        className={`panel${active ? ' panel-sandbox' : ''}`}
        role="tabpanel"
        id={panelDomId(tab)}
        aria-labelledby={tabDomId(tab)}
      >
        {active ? <SandboxView key={active.id} sandbox={active} /> : <HomeView />}
      </main>
    </div>
  );
}
