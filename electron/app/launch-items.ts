/**
 * Turns a command line (`belljar [open] ITEM…`, or what a file manager or
 * mail client passes) into open requests. Pure: the caller supplies argv and
 * the launching process's working directory, which for a second launch is the
 * *second* process's directory, not ours.
 *
 * Rules, in order:
 * - argv[0] (the executable) is skipped; when Electron runs the app from a
 *   directory (`electron . FILE`, `process.defaultApp`), the first non-switch
 *   argument is that directory and is skipped too;
 * - before a `--`, anything starting with `-` is a Chromium/Electron switch
 *   and ignored; after `--`, every argument is an item (for names that start
 *   with a dash);
 * - an optional leading verb `open` is dropped (`belljar open FILE`);
 * - `http:`/`https:` URLs open as URLs; `file:` URLs become paths; anything
 *   else with a URL scheme (`javascript:`, `data:`, `mailto:`, …) is refused.
 *   A file whose name has a colon before any slash is written `./name:…`;
 * - everything else is a path, made absolute against the working directory.
 * Each request is checked with the contract's `parseOpenRequest`, exactly as
 * a request from the renderer would be.
 */
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ContractError, parseOpenRequest, type OpenRequest } from '../contract/ipc.js';

/** One launch opens at most this many sandboxes; each is a whole VM. */
export const MAX_LAUNCH_ITEMS = 16;

export interface LaunchOptions {
  /** The working directory of the process that was launched (absolute). */
  readonly cwd: string;
  /** True when argv[1] is the app's directory (`electron .`), i.e. `process.defaultApp`. */
  readonly defaultApp: boolean;
}

export interface RefusedItem {
  /** The argument as given (shortened for display). */
  readonly argument: string;
  readonly reason: string;
}

export interface LaunchItems {
  readonly requests: readonly OpenRequest[];
  readonly refused: readonly RefusedItem[];
}

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;

function shorten(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

/** The item arguments of argv: executable, app directory, switches and the verb removed. */
export function itemArguments(argv: readonly string[], defaultApp: boolean): string[] {
  const items: string[] = [];
  let appPathPending = defaultApp;
  let afterDashDash = false;
  let verbAllowed = true;
  for (const arg of argv.slice(1)) {
    if (!afterDashDash && arg === '--') {
      afterDashDash = true;
      continue;
    }
    if (!afterDashDash && arg.startsWith('-')) continue;
    if (appPathPending && !afterDashDash) {
      appPathPending = false;
      continue;
    }
    // The verb is only a verb as the first item and before `--`: `belljar -- open` opens a file named "open".
    if (verbAllowed && !afterDashDash && arg === 'open') {
      verbAllowed = false;
      continue;
    }
    verbAllowed = false;
    items.push(arg);
  }
  return items;
}

/** One argument → a request, or the reason it is refused. */
export function parseLaunchItem(arg: string, cwd: string): OpenRequest | RefusedItem {
  const refuse = (reason: string): RefusedItem => ({ argument: shorten(arg), reason });
  if (arg.length === 0) return refuse('empty argument');
  if (arg.includes('\0')) return refuse('contains a NUL character');
  let request: unknown;
  const scheme = SCHEME.exec(arg)?.[1]?.toLowerCase();
  if (scheme === 'http' || scheme === 'https') {
    let url: URL;
    try {
      url = new URL(arg);
    } catch {
      return refuse('not a valid web address');
    }
    if (url.hostname === '') return refuse('the web address has no host');
    request = { kind: 'url', url: url.href };
  } else if (scheme === 'file') {
    let path: string;
    try {
      path = fileURLToPath(arg);
    } catch {
      return refuse('only local file: URLs (no host) can be opened');
    }
    request = { kind: 'file', path };
  } else if (scheme !== undefined) {
    return refuse(
      `"${scheme}:" links cannot be opened (only http, https and files; write ./${shorten(arg)} for a file)`,
    );
  } else {
    if (!isAbsolute(arg) && !isAbsolute(cwd)) return refuse('the launching directory is unknown');
    request = { kind: 'file', path: resolve(cwd, arg) };
  }
  try {
    return parseOpenRequest(request);
  } catch (error) {
    return refuse(error instanceof ContractError ? error.message : 'not an item Belljar can open');
  }
}

function isRefused(value: OpenRequest | RefusedItem): value is RefusedItem {
  return 'reason' in value;
}

export function parseLaunchItems(argv: readonly string[], options: LaunchOptions): LaunchItems {
  const requests: OpenRequest[] = [];
  const refused: RefusedItem[] = [];
  for (const arg of itemArguments(argv, options.defaultApp)) {
    const parsed = parseLaunchItem(arg, options.cwd);
    if (isRefused(parsed)) refused.push(parsed);
    else if (requests.length >= MAX_LAUNCH_ITEMS) {
      refused.push({ argument: shorten(arg), reason: `more than ${MAX_LAUNCH_ITEMS} items in one launch` });
    } else requests.push(parsed);
  }
  return { requests, refused };
}
