/** Which key presses go to the guest, and releasing what is still held. */
import { LIMITS, type InputEvent } from '../../../electron/contract/ipc.js';

/** What main's validator accepts as a key code (KeyboardEvent.code); others (e.g. "") are not sent. */
export function isSendableCode(code: string): boolean {
  return code.length > 0 && code.length <= LIMITS.maxKeyCodeChars && /^[A-Za-z0-9]+$/.test(code);
}

/**
 * Keys the guest saw go down. Only their releases are forwarded (a release
 * whose press went to a shortcut stays on the host), and on blur every one of
 * them is released, so no key stays stuck in the guest.
 */
export class HeldKeys {
  private readonly held = new Set<string>();

  down(code: string): InputEvent {
    this.held.add(code);
    return { type: 'key', code, down: true };
  }

  up(code: string): InputEvent | null {
    return this.held.delete(code) ? { type: 'key', code, down: false } : null;
  }

  releaseAll(): InputEvent[] {
    const events = [...this.held].map((code): InputEvent => ({ type: 'key', code, down: false }));
    this.held.clear();
    return events;
  }
}
