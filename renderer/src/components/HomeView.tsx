import { useMemo, useState, type FormEvent } from 'react';
import { URL_INPUT_ID, useActions } from '../actions.js';
import { formatMemory, formatUptime, STATE_WORDS } from '../format.js';
import { SHORTCUTS } from '../shortcuts.js';
import { useUi, visibleSandboxes } from '../store.js';
import { checkUrl } from '../url.js';
import { useNow } from '../use-now.js';

/** The home tab: open a file or a web address, what is running, what went wrong. */
export function HomeView() {
  return (
    <div className="home">
      <header className="home-header">
        <h1>Belljar</h1>
        <p>
          Open untrusted files and links in a disposable microVM. Nothing inside can touch your files, and closing its
          tab destroys it.
        </p>
      </header>
      <section className="open-panel" aria-labelledby="open-heading">
        <h2 id="open-heading">Open something</h2>
        <OpenFileButton />
        <UrlForm />
      </section>
      <SandboxList />
      <RecentErrors />
      <ShortcutHelp />
    </div>
  );
}

function OpenFileButton() {
  const { openFile } = useActions();
  const [busy, setBusy] = useState(false);
  return (
    <button
      type="button"
      className="primary"
      aria-keyshortcuts="Control+O Control+Shift+O"
      disabled={busy}
      onClick={() => {
        setBusy(true);
        void openFile().finally(() => setBusy(false));
      }}
    >
      Open a file…
    </button>
  );
}

function UrlForm() {
  const { openUrl } = useActions();
  const [text, setText] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const checked = checkUrl(text);
    if (!checked.ok) {
      setError(checked.message);
      return;
    }
    setError(null);
    setBusy(true);
    const failure = await openUrl(checked.url);
    setBusy(false);
    setError(failure);
    if (failure === null) setText('');
  };

  return (
    <form className="url-form" aria-label="Open a web address" noValidate onSubmit={(e) => void submit(e)}>
      <label htmlFor={URL_INPUT_ID}>Web address</label>
      <div className="url-row">
        <input
          id={URL_INPUT_ID}
          type="url"
          inputMode="url"
          autoComplete="off"
          spellCheck={false}
          placeholder="https://example.com/"
          value={text}
          aria-invalid={error !== null}
          aria-describedby={error !== null ? 'url-error' : undefined}
          aria-keyshortcuts="Control+Shift+L"
          onChange={(e) => setText(e.target.value)}
        />
        <button type="submit" disabled={busy}>
          {busy ? 'Opening…' : 'Open in sandbox'}
        </button>
      </div>
      {error !== null && (
        <p id="url-error" className="form-error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}

function SandboxList() {
  const all = useUi((s) => s.sandboxes);
  const showTab = useUi((s) => s.showTab);
  const { close } = useActions();
  const sandboxes = useMemo(() => visibleSandboxes(all), [all]);
  const now = useNow(1000);
  return (
    <section aria-labelledby="running-heading">
      <h2 id="running-heading">Running sandboxes</h2>
      {sandboxes.length === 0 ? (
        <p>No sandbox is open.</p>
      ) : (
        <table className="sandbox-table" aria-labelledby="running-heading">
          <thead>
            <tr>
              <th scope="col">Item</th>
              <th scope="col">State</th>
              <th scope="col">Memory</th>
              <th scope="col">Uptime</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {sandboxes.map((s) => (
              <tr key={s.id}>
                <th scope="row">
                  <button type="button" className="link" onClick={() => showTab(s.id)}>
                    {s.title}
                  </button>
                </th>
                <td>{STATE_WORDS[s.state]}</td>
                <td>{formatMemory(s)}</td>
                <td>{formatUptime(now - s.openedAt)}</td>
                <td>
                  <button type="button" aria-label={`Close ${s.title}`} onClick={() => void close(s.id)}>
                    Close
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function RecentErrors() {
  const errors = useUi((s) => s.errors);
  const clearErrors = useUi((s) => s.clearErrors);
  if (errors.length === 0) return null;
  return (
    <section className="errors" aria-labelledby="errors-heading">
      <h2 id="errors-heading">Recent problems</h2>
      <ul>
        {errors.map((e) => (
          <li key={e.key}>
            <time dateTime={new Date(e.at).toISOString()}>{new Date(e.at).toLocaleTimeString()}</time> {e.message}
          </li>
        ))}
      </ul>
      <button type="button" onClick={clearErrors}>
        Clear the list
      </button>
    </section>
  );
}

function ShortcutHelp() {
  return (
    <section aria-labelledby="shortcuts-heading">
      <h2 id="shortcuts-heading">Keyboard shortcuts</h2>
      <dl className="shortcuts">
        {SHORTCUTS.map((s) => (
          <div key={s.action}>
            <dt>
              <kbd>{s.keys}</kbd>
            </dt>
            <dd>{s.description}</dd>
          </div>
        ))}
      </dl>
      <p>While a sandbox's display has focus, every other key goes to the sandbox.</p>
    </section>
  );
}
