/**
 * The one contract shared by the main process, the preload, the renderer and
 * the test bridge (the same service over a WebSocket). It imports nothing, so
 * every process can include it. Everything the renderer sends is untrusted
 * until one of the `parse*` validators below (run in main) accepts it.
 */

/** The channel names of the preload API (ipcRenderer ↔ ipcMain). */
export const IPC_CHANNELS = {
  listSandboxes: 'belljar:list-sandboxes',
  open: 'belljar:open',
  pickAndOpenFile: 'belljar:pick-and-open-file',
  close: 'belljar:close',
  input: 'belljar:input',
  resize: 'belljar:resize',
  /** main → renderer: the whole sandbox list, whenever anything in it changes. */
  sandboxes: 'belljar:sandboxes',
  /** renderer → main: attach a display; main answers on `displayPort` with a MessagePort. */
  attachDisplay: 'belljar:attach-display',
  displayPort: 'belljar:display-port',
} as const;

export type SandboxId = string;

export type SandboxState = 'starting' | 'running' | 'closing' | 'closed' | 'failed';

/** What the user opened. */
export type OpenRequest =
  { readonly kind: 'file'; readonly path: string } | { readonly kind: 'url'; readonly url: string };

/** Where a sandbox is in its start: one step after another, for the progress bar. */
export type BootStage = 'preparing' | 'booting' | 'guest-ready' | 'opening' | 'shown';
export const BOOT_STAGES: readonly BootStage[] = ['preparing', 'booting', 'guest-ready', 'opening', 'shown'];

export interface SandboxSummary {
  readonly id: SandboxId;
  /** The file's name or the URL's host. */
  readonly title: string;
  readonly item: { readonly kind: 'file'; readonly name: string } | { readonly kind: 'url'; readonly url: string };
  readonly state: SandboxState;
  readonly stage: BootStage;
  /** Why it failed (state `failed`), in plain words. */
  readonly error?: string;
  /** The page's title and load state as the guest agent reports them (untrusted text). */
  readonly page?: { readonly title?: string; readonly state: 'idle' | 'loading' | 'loaded' | 'error' };
  /** Epoch ms when `open` was called. */
  readonly openedAt: number;
  /** Guest RAM, and the VMM process's resident memory when known. */
  readonly memoryMiB: number;
  readonly rssMiB?: number;
  /** The guest's display size, once known. */
  readonly display?: { readonly width: number; readonly height: number };
  /** Whether the guest may reach the public web through the egress proxy. */
  readonly network: 'none' | 'web';
}

export type PointerButton = 'left' | 'middle' | 'right';

/** Input for a sandbox's guest. Pointer coordinates are in guest display pixels. */
export type InputEvent =
  | { readonly type: 'key'; readonly code: string; readonly down: boolean }
  | { readonly type: 'pointer-move'; readonly x: number; readonly y: number }
  | { readonly type: 'pointer-button'; readonly button: PointerButton; readonly down: boolean }
  | { readonly type: 'wheel'; readonly dx: number; readonly dy: number };

/** Called with each frame (wire format below); the transport acknowledges it when the call returns. */
export type FrameListener = (frame: ArrayBuffer) => void;

/** What the preload exposes as `window.belljar`, and what the WebSocket client implements. */
export interface BelljarApi {
  listSandboxes(): Promise<readonly SandboxSummary[]>;
  /** Starts a sandbox; rejects with a plain-words message when the item is refused. */
  open(request: OpenRequest): Promise<SandboxSummary>;
  /** Shows the host's file dialog, then opens the choice; null when cancelled. */
  pickAndOpenFile(): Promise<SandboxSummary | null>;
  close(id: SandboxId): Promise<void>;
  sendInput(id: SandboxId, events: readonly InputEvent[]): void;
  /** The display area's size in pixels; the guest's resolution follows. */
  resize(id: SandboxId, width: number, height: number): void;
  /** Called with the whole list on every change (and once at once). Returns unsubscribe. */
  onSandboxes(listener: (list: readonly SandboxSummary[]) => void): () => void;
  /** Frames of one sandbox's display; the first one is a full frame. Returns detach. */
  attachDisplay(id: SandboxId, listener: FrameListener): () => void;
}

// ------------------------------------------------------------------ limits

export const LIMITS = {
  maxPathChars: 4096,
  maxUrlChars: 8192,
  maxIdChars: 64,
  maxKeyCodeChars: 32,
  maxEventsPerBatch: 256,
  minDisplaySide: 64,
  maxDisplaySide: 3840,
  /** Wheel detents per event. */
  maxWheel: 16,
} as const;

// ------------------------------------------------------------------ validators

export class ContractError extends Error {
  override name = 'ContractError';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function onlyKeys(value: Record<string, unknown>, keys: readonly string[], what: string): void {
  for (const key of Object.keys(value)) {
    if (!keys.includes(key)) throw new ContractError(`${what}: unexpected field ${JSON.stringify(key.slice(0, 40))}`);
  }
}

function finiteIn(value: unknown, min: number, max: number, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new ContractError(`${what} must be a number from ${min} to ${max}`);
  }
  return value;
}

export function parseSandboxId(value: unknown): SandboxId {
  if (typeof value !== 'string' || !/^[a-z0-9-]+$/.test(value) || value.length > LIMITS.maxIdChars) {
    throw new ContractError('not a sandbox id');
  }
  return value;
}

export function parseOpenRequest(value: unknown): OpenRequest {
  if (!isRecord(value)) throw new ContractError('open: the request must be an object');
  if (value['kind'] === 'file') {
    onlyKeys(value, ['kind', 'path'], 'open');
    const path = value['path'];
    if (typeof path !== 'string' || path.length === 0 || path.length > LIMITS.maxPathChars || path.includes('\0')) {
      throw new ContractError('open: the file path must be a non-empty string without NUL');
    }
    return { kind: 'file', path };
  }
  if (value['kind'] === 'url') {
    onlyKeys(value, ['kind', 'url'], 'open');
    const url = value['url'];
    if (typeof url !== 'string' || url.length === 0 || url.length > LIMITS.maxUrlChars) {
      throw new ContractError(`open: the URL must be a string of 1 to ${LIMITS.maxUrlChars} characters`);
    }
    return { kind: 'url', url };
  }
  throw new ContractError('open: kind must be "file" or "url"');
}

const BUTTONS: readonly PointerButton[] = ['left', 'middle', 'right'];

export function parseInputEvent(value: unknown): InputEvent {
  if (!isRecord(value)) throw new ContractError('input: an event must be an object');
  switch (value['type']) {
    case 'key': {
      onlyKeys(value, ['type', 'code', 'down'], 'input');
      const code = value['code'];
      if (typeof code !== 'string' || !/^[A-Za-z0-9]+$/.test(code) || code.length > LIMITS.maxKeyCodeChars) {
        throw new ContractError('input: code must be a KeyboardEvent.code');
      }
      if (typeof value['down'] !== 'boolean') throw new ContractError('input: down must be true or false');
      return { type: 'key', code, down: value['down'] };
    }
    case 'pointer-move':
      onlyKeys(value, ['type', 'x', 'y'], 'input');
      return {
        type: 'pointer-move',
        x: finiteIn(value['x'], 0, LIMITS.maxDisplaySide, 'input: x'),
        y: finiteIn(value['y'], 0, LIMITS.maxDisplaySide, 'input: y'),
      };
    case 'pointer-button': {
      onlyKeys(value, ['type', 'button', 'down'], 'input');
      const button = value['button'];
      if (!BUTTONS.includes(button as PointerButton)) throw new ContractError('input: unknown button');
      if (typeof value['down'] !== 'boolean') throw new ContractError('input: down must be true or false');
      return { type: 'pointer-button', button: button as PointerButton, down: value['down'] };
    }
    case 'wheel':
      onlyKeys(value, ['type', 'dx', 'dy'], 'input');
      return {
        type: 'wheel',
        dx: Math.round(finiteIn(value['dx'], -LIMITS.maxWheel, LIMITS.maxWheel, 'input: dx')),
        dy: Math.round(finiteIn(value['dy'], -LIMITS.maxWheel, LIMITS.maxWheel, 'input: dy')),
      };
    default:
      throw new ContractError('input: unknown event type');
  }
}

export function parseInputEvents(value: unknown): InputEvent[] {
  if (!Array.isArray(value) || value.length > LIMITS.maxEventsPerBatch) {
    throw new ContractError(`input: events must be an array of at most ${LIMITS.maxEventsPerBatch}`);
  }
  return value.map(parseInputEvent);
}

export function parseDisplaySize(width: unknown, height: unknown): { width: number; height: number } {
  const side = (v: unknown, what: string) => {
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new ContractError(`resize: ${what} must be an integer`);
    return Math.min(LIMITS.maxDisplaySide, Math.max(LIMITS.minDisplaySide, v));
  };
  return { width: side(width, 'width'), height: side(height, 'height') };
}
