/**
 * The app's own keyboard shortcuts. All but one use Ctrl+Shift, which
 * programs inside a sandbox rarely need, so they work even while the display
 * has focus (every other key then goes to the guest). Plain Ctrl+O opens a
 * file only outside the display: inside, it belongs to the guest.
 */
export type ShortcutAction = 'open-file' | 'open-url' | 'close-tab' | 'home' | 'next-tab' | 'previous-tab';

export interface Shortcut {
  readonly action: ShortcutAction;
  readonly keys: string;
  readonly description: string;
}

export const SHORTCUTS: readonly Shortcut[] = [
  { action: 'open-file', keys: 'Ctrl+Shift+O (or Ctrl+O outside a display)', description: 'Open a file in a sandbox' },
  { action: 'open-url', keys: 'Ctrl+Shift+L', description: 'Go to the web address field' },
  { action: 'close-tab', keys: 'Ctrl+Shift+W', description: 'Close the shown sandbox' },
  { action: 'home', keys: 'Ctrl+Shift+H', description: 'Show the home tab (also leaves a display)' },
  { action: 'next-tab', keys: 'Ctrl+Shift+PageDown', description: 'Next tab' },
  { action: 'previous-tab', keys: 'Ctrl+Shift+PageUp', description: 'Previous tab' },
];

export interface KeyLike {
  readonly key: string;
  readonly ctrlKey: boolean;
  readonly shiftKey: boolean;
  readonly altKey: boolean;
  readonly metaKey: boolean;
}

/** The shortcut a key press means, if any; `inDisplay` when a sandbox's display has focus. */
export function matchShortcut(e: KeyLike, inDisplay: boolean): ShortcutAction | null {
  if (!e.ctrlKey || e.altKey || e.metaKey) return null;
  const key = e.key.toLowerCase();
  if (!e.shiftKey) return key === 'o' && !inDisplay ? 'open-file' : null;
  switch (key) {
    case 'o':
      return 'open-file';
    case 'l':
      return 'open-url';
    case 'w':
      return 'close-tab';
    case 'h':
      return 'home';
    case 'pagedown':
      return 'next-tab';
    case 'pageup':
      return 'previous-tab';
    default:
      return null;
  }
}
