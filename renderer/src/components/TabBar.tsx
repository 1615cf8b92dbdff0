import { useEffect, useMemo, type KeyboardEvent } from 'react';
import { STATE_WORDS } from '../format.js';
import { tabOrder } from '../actions.js';
import { useUi, visibleSandboxes, type TabId } from '../store.js';

export function tabDomId(tab: TabId): string {
  return `tab-${tab}`;
}
export function panelDomId(tab: TabId): string {
  return `panel-${tab}`;
}

/**
 * Home plus one tab per sandbox (ARIA tabs pattern: one tab stop, arrow keys
 * move between tabs, the tab that gets focus is shown).
 */
export function TabBar({ focusRequest }: { readonly focusRequest: number }) {
  const all = useUi((s) => s.sandboxes);
  const activeTab = useUi((s) => s.activeTab);
  const showTab = useUi((s) => s.showTab);
  const sandboxes = useMemo(() => visibleSandboxes(all), [all]);

  // A shortcut switched tabs: move focus to the tab (it also leaves a focused display).
  useEffect(() => {
    if (focusRequest > 0) document.getElementById(tabDomId(useUi.getState().activeTab))?.focus();
  }, [focusRequest]);

  const onKeyDown = (e: KeyboardEvent<HTMLDivElement>) => {
    const order = tabOrder();
    const at = order.indexOf(activeTab);
    const target =
      e.key === 'ArrowRight'
        ? order[(at + 1) % order.length]
        : e.key === 'ArrowLeft'
          ? order[(at - 1 + order.length) % order.length]
          : e.key === 'Home'
            ? order[0]
            : e.key === 'End'
              ? order[order.length - 1]
              : undefined;
    if (target === undefined) return;
    e.preventDefault();
    showTab(target);
    document.getElementById(tabDomId(target))?.focus();
  };

  return (
    <div className="tabbar" role="tablist" aria-label="Belljar tabs" onKeyDown={onKeyDown}>
      <button
        type="button"
        role="tab"
        id={tabDomId('home')}
        aria-selected={activeTab === 'home'}
        aria-controls={panelDomId('home')}
        tabIndex={activeTab === 'home' ? 0 : -1}
        className="tab tab-home"
        onClick={() => showTab('home')}
      >
        Home
      </button>
      {sandboxes.map((s) => (
        <button
          key={s.id}
          type="button"
          role="tab"
          id={tabDomId(s.id)}
          aria-selected={activeTab === s.id}
          aria-controls={panelDomId(s.id)}
          tabIndex={activeTab === s.id ? 0 : -1}
          className={`tab tab-sandbox state-${s.state}`}
          aria-label={`${s.title}, sandboxed, ${STATE_WORDS[s.state].toLowerCase()}`}
          onClick={() => showTab(s.id)}
        >
          <span className="tab-dot" aria-hidden="true" />
          <span className="tab-title">{s.title}</span>
        </button>
      ))}
    </div>
  );
}
