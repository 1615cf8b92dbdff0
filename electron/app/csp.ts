/**
 * The Content Security Policy of our pages, and a checker that says what
 * would make a policy weak. The same checker runs over the policy main sets
 * and over the `<meta>` policy in renderer/index.html (the one that applies
 * to file:// pages, which never pass through session.webRequest).
 */

/**
 * Nothing but our own scripts, styles and images: no inline or eval'd
 * script, no network at all (the UI gets everything over IPC), no plugins,
 * frames, forms or <base>.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "font-src 'self'",
  "connect-src 'none'",
  "worker-src 'none'",
  "object-src 'none'",
  "frame-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export type CspDirectives = ReadonlyMap<string, readonly string[]>;

export function parseCsp(policy: string): CspDirectives {
  const directives = new Map<string, string[]>();
  for (const part of policy.split(';')) {
    const [name, ...sources] = part.trim().split(/\s+/);
    // The first occurrence of a directive wins (CSP3 §2.2.1); repeats are ignored.
    if (name && !directives.has(name.toLowerCase())) directives.set(name.toLowerCase(), sources);
  }
  return directives;
}

const NEVER_ANYWHERE = ["'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "'wasm-unsafe-eval'", '*'];
/** Source expressions that would let a page load or run code from anywhere but our files. */
const REMOTE_SOURCE = /^(https?:|wss?:|ftp:|\*\.|[a-z0-9.-]+\.[a-z]{2,}|[a-z][a-z0-9+.-]*:\/\/)/i;
/** Script must come from our own files only. */
const SCRIPT_ALLOWED = new Set(["'self'", "'none'"]);

/**
 * What is weak about `policy`, in plain words; empty when it is strict.
 * `delivery: 'meta'`: the policy comes in a <meta> tag, where browsers ignore
 * frame-ancestors, so it is not required there.
 */
export function cspWeaknesses(policy: string, delivery: 'header' | 'meta' = 'header'): string[] {
  const directives = parseCsp(policy);
  const weak: string[] = [];
  const effective = (name: string) => directives.get(name) ?? directives.get('default-src');
  if (directives.get('default-src')?.join(' ') !== "'none'") weak.push("default-src must be 'none'");
  for (const [name, sources] of directives) {
    for (const source of sources) {
      if (NEVER_ANYWHERE.includes(source.toLowerCase())) weak.push(`${name} allows ${source}`);
      else if (REMOTE_SOURCE.test(source)) weak.push(`${name} allows remote source ${source}`);
    }
  }
  for (const name of ['script-src', 'script-src-elem', 'script-src-attr', 'worker-src']) {
    for (const source of effective(name) ?? []) {
      if (!SCRIPT_ALLOWED.has(source)) weak.push(`${name} allows ${source}`);
    }
  }
  for (const name of ['object-src', 'frame-src', 'child-src']) {
    const sources = effective(name);
    if (sources && sources.join(' ') !== "'none'") weak.push(`${name} must be 'none'`);
  }
  const required = delivery === 'meta' ? ['base-uri', 'form-action'] : ['base-uri', 'form-action', 'frame-ancestors'];
  for (const name of required) {
    // These do not fall back to default-src, so each must be present.
    if (directives.get(name)?.join(' ') !== "'none'") weak.push(`${name} must be 'none'`);
  }
  return [...new Set(weak)];
}

/** The policy of the first `<meta http-equiv="Content-Security-Policy">` in an HTML page, if any. */
export function metaCspOf(html: string): string | null {
  for (const tag of html.match(/<meta\b[^>]*>/gis) ?? []) {
    if (!/http-equiv\s*=\s*["']content-security-policy["']/i.test(tag)) continue;
    const content = /\bcontent\s*=\s*"([^"]*)"|\bcontent\s*=\s*'([^']*)'/is.exec(tag);
    return content ? (content[1] ?? content[2] ?? '').replace(/\s+/g, ' ').trim() : null;
  }
  return null;
}
