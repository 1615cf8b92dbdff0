import { LIMITS } from '../../electron/contract/ipc.js';

export type UrlCheck = { readonly ok: true; readonly url: string } | { readonly ok: false; readonly message: string };

/** A scheme followed by `:`, but not `host:port` (digits after the colon). */
const SCHEME = /^([a-z][a-z0-9+.-]*):(?!\d+(?:[/?#]|$))/i;

/**
 * What the URL field accepts: http(s) addresses only, checked here so the
 * user sees why at once (main checks again). A bare host such as
 * `example.com/a` means https.
 */
export function checkUrl(input: string): UrlCheck {
  const text = input.trim();
  if (text === '') return { ok: false, message: 'Type or paste a web address first.' };
  if (text.length > LIMITS.maxUrlChars) {
    return { ok: false, message: `That address is too long (more than ${LIMITS.maxUrlChars} characters).` };
  }
  const scheme = SCHEME.exec(text)?.[1]?.toLowerCase();
  if (scheme !== undefined && scheme !== 'http' && scheme !== 'https') {
    return {
      ok: false,
      message: `Only web addresses (http:// or https://) can be opened here, not "${scheme}:" links.`,
    };
  }
  let url: URL;
  try {
    url = new URL(scheme === undefined ? `https://${text}` : text);
  } catch {
    return { ok: false, message: 'That does not look like a web address.' };
  }
  if (url.hostname === '') return { ok: false, message: 'That web address has no host name.' };
  if (url.username !== '' || url.password !== '') {
    return { ok: false, message: 'Web addresses with a user name or password are not opened.' };
  }
  return { ok: true, url: url.href };
}
