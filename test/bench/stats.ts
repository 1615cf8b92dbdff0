/** Small statistics for benchmark reports. */

export interface Summary {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly n: number;
}

/** Median, min and max of the numbers that are present; null when none are. */
export function summarize(values: readonly (number | null | undefined)[]): Summary | null {
  const xs = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b);
  if (xs.length === 0) return null;
  const mid = Math.floor(xs.length / 2);
  const median = xs.length % 2 === 1 ? xs[mid]! : (xs[mid - 1]! + xs[mid]!) / 2;
  return { median, min: xs[0]!, max: xs[xs.length - 1]!, n: xs.length };
}

/** a / b, rounded to 3 decimals; null when either is missing or b is 0. */
export function ratio(a: Summary | null, b: Summary | null): number | null {
  if (!a || !b || b.median === 0) return null;
  return Math.round((a.median / b.median) * 1000) / 1000;
}

/** Rounds to `digits` decimals (for JSON output). */
export function round(value: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
