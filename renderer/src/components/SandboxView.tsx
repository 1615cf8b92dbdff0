import { BOOT_STAGES, type SandboxSummary } from '../../../electron/contract/ipc.js';
import { useActions } from '../actions.js';
import { describeItem, formatMemory, STAGE_WORDS, STATE_WORDS } from '../format.js';
import { Display } from './Display.js';

/** One sandbox's tab: the coloured "sandboxed" frame, its status, and its live screen. */
export function SandboxView({ sandbox }: { readonly sandbox: SandboxSummary }) {
  const { close } = useActions();
  const stageIndex = BOOT_STAGES.indexOf(sandbox.stage);
  const booting = sandbox.state === 'starting';
  const live = sandbox.state === 'starting' || sandbox.state === 'running';
  const headingId = `sandbox-heading-${sandbox.id}`;
  return (
    <section className={`sandbox state-${sandbox.state}`} aria-labelledby={headingId}>
      <div className="sandbox-band" aria-hidden="true">
        SANDBOXED — nothing in here can touch your computer
      </div>
      <header className="sandbox-header">
        <div className="sandbox-titles">
          <h2 id={headingId}>
            <span className="visually-hidden">Sandboxed: </span>
            {sandbox.title}
          </h2>
          <p className="sandbox-item">{describeItem(sandbox)}</p>
        </div>
        <dl className="sandbox-facts">
          <div>
            <dt>State</dt>
            <dd data-testid="sandbox-state">{STATE_WORDS[sandbox.state]}</dd>
          </div>
          <div>
            <dt>Network</dt>
            <dd>{sandbox.network === 'web' ? 'Web only' : 'None'}</dd>
          </div>
          <div>
            <dt>Memory</dt>
            <dd>{formatMemory(sandbox)}</dd>
          </div>
          {sandbox.page?.title !== undefined && (
            <div>
              {/* Untrusted text from the guest: shown as data, never as our own words. */}
              <dt>Page says</dt>
              <dd className="untrusted">{sandbox.page.title}</dd>
            </div>
          )}
        </dl>
        <button
          type="button"
          className="close-button"
          aria-keyshortcuts="Control+Shift+W"
          onClick={() => void close(sandbox.id)}
        >
          Close sandbox
        </button>
      </header>
      {booting && (
        <div className="boot-progress">
          <label htmlFor={`progress-${sandbox.id}`}>{STAGE_WORDS[sandbox.stage]}…</label>
          <progress
            id={`progress-${sandbox.id}`}
            max={BOOT_STAGES.length - 1}
            value={Math.max(0, stageIndex)}
            aria-valuetext={`${STAGE_WORDS[sandbox.stage]} (step ${stageIndex + 1} of ${BOOT_STAGES.length})`}
          />
        </div>
      )}
      {sandbox.state === 'failed' && (
        <div className="sandbox-failure" role="alert">
          <strong>This sandbox failed.</strong> {sandbox.error ?? 'No reason was given.'} Close it and try again.
        </div>
      )}
      {live ? (
        <Display id={sandbox.id} title={sandbox.title} />
      ) : (
        sandbox.state === 'closing' && <p className="sandbox-closing">Closing and destroying the microVM…</p>
      )}
    </section>
  );
}
