/**
 * The egress proxy's decision log, bounded in every direction a guest could
 * push it: each text field is cut to printable ASCII and MAX_FIELD characters,
 * the callback is rate-limited (a token bucket; what it drops is counted in
 * the next delivered entry's `suppressed`), and only the last `ringSize`
 * entries are kept for `recent()`.
 */

export type DecisionRequest = 'connect' | 'http' | 'connection';

/**
 * `allowed`: a tunnel or request went upstream. `refused`: the policy said no
 * (403) or a limit was hit. `bad-request`: the guest's request was malformed
 * (400/431/505). `failed`: allowed, but DNS or the upstream failed (502/504).
 * `closed`: the proxy closed a connection (timeout, mode change, internal error).
 */
export type DecisionOutcome = 'allowed' | 'refused' | 'bad-request' | 'failed' | 'closed';

export interface ProxyDecision {
  /** Date.now() when decided. */
  readonly time: number;
  /** The guest connection (numbered from 1 per proxy). */
  readonly connection: number;
  readonly request: DecisionRequest;
  /** `host:port` as requested (sanitized), or `-`. */
  readonly target: string;
  readonly outcome: DecisionOutcome;
  /** The HTTP status the guest got (0: none was sent). */
  readonly status: number;
  readonly reason: string;
  /** The address connected to, or the one that was refused. */
  readonly address?: string;
  /** The policy rule (CIDR) that decided. */
  readonly rule?: string;
  /** Entries the rate limit kept from the callback since the last delivered one. */
  readonly suppressed?: number;
}

export type DecisionInput = Omit<ProxyDecision, 'time' | 'suppressed'>;

export interface DecisionLogOptions {
  /** Entries kept for `recent()` (default 256). */
  readonly ringSize?: number;
  /** Callback burst (default 100 entries). */
  readonly burst?: number;
  /** Callback refill rate (default 50 entries per second). */
  readonly perSecond?: number;
  readonly now?: () => number;
}

export const MAX_FIELD = 200;

export function sanitize(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > MAX_FIELD ? `${clean.slice(0, MAX_FIELD - 1)}…` : clean;
}

export class DecisionLog {
  readonly #sink: ((decision: ProxyDecision) => void) | undefined;
  readonly #ring: ProxyDecision[] = [];
  readonly #ringSize: number;
  readonly #burst: number;
  readonly #perSecond: number;
  readonly #now: () => number;
  #tokens: number;
  #lastRefill: number;
  #suppressed = 0;

  constructor(sink?: (decision: ProxyDecision) => void, options: DecisionLogOptions = {}) {
    this.#sink = sink;
    this.#ringSize = Math.max(1, options.ringSize ?? 256);
    this.#burst = Math.max(1, options.burst ?? 100);
    this.#perSecond = Math.max(0, options.perSecond ?? 50);
    this.#now = options.now ?? Date.now;
    this.#tokens = this.#burst;
    this.#lastRefill = this.#now();
  }

  record(input: DecisionInput): ProxyDecision {
    const time = this.#now();
    const decision: ProxyDecision = {
      ...input,
      time,
      target: sanitize(input.target),
      reason: sanitize(input.reason),
      ...(input.address === undefined ? {} : { address: sanitize(input.address) }),
      ...(input.rule === undefined ? {} : { rule: sanitize(input.rule) }),
    };
    this.#ring.push(decision);
    if (this.#ring.length > this.#ringSize) this.#ring.shift();
    if (this.#sink === undefined) return decision;
    this.#tokens = Math.min(this.#burst, this.#tokens + ((time - this.#lastRefill) * this.#perSecond) / 1000);
    this.#lastRefill = time;
    if (this.#tokens < 1) {
      this.#suppressed++;
      return decision;
    }
    this.#tokens--;
    const delivered = this.#suppressed > 0 ? { ...decision, suppressed: this.#suppressed } : decision;
    this.#suppressed = 0;
    try {
      this.#sink(delivered);
    } catch {
      // A failing log sink must not take the proxy down.
    }
    return decision;
  }

  /** The last entries, oldest first. */
  recent(): readonly ProxyDecision[] {
    return [...this.#ring];
  }
}
