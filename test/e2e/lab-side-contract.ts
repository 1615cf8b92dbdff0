/** What the end-to-end test and its lab side (lab-side.ts) share: the ready line and the diagnostics report. */

/** What lab-side.ts prints, followed by the bridge's URL, once it serves (the test waits for it). */
export const LAB_SIDE_READY = 'lab-side: ready';

type Size = { readonly width: number; readonly height: number };

/** One sandbox in lab-side.ts's `GET /sandboxes` report (what the session service saw). */
export interface SandboxReport {
  readonly id: string;
  readonly state: string;
  readonly error?: string;
  readonly pid?: number;
  readonly alive: boolean;
  readonly tempDir: string;
  readonly tempDirExists: boolean;
  readonly timings: Readonly<Record<string, number>>;
  readonly counts: { readonly inputEvents: number; readonly resizes: number; readonly frames: number };
  /** The guest's screen size, from its frames. */
  readonly display?: Size;
  /** The size the renderer last asked for. */
  readonly requestedDisplay?: Size;
  /** The tail of its VMM process's stderr (the stall watch's lines among it). */
  readonly stderrTail: string;
}
