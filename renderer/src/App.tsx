import { useSandboxStore } from './store.js';

/** The home view: what is open, and how to open more. */
export function App() {
  const sandboxes = useSandboxStore((s) => s.sandboxes);
  return (
    <main className="home">
      <header>
        <h1>Belljar</h1>
        <p>Open untrusted files and links in a disposable microVM. Closing the window destroys it.</p>
      </header>
      <section aria-labelledby="running-heading">
        <h2 id="running-heading">Running sandboxes</h2>
        {sandboxes.length === 0 ? (
          <p>No sandbox is open.</p>
        ) : (
          <ul>
            {sandboxes.map((s) => (
              <li key={s.id}>
                {s.title} — {s.state}
              </li>
            ))}
          </ul>
        )}
      </section>
    </main>
  );
}
