/**
 * A generated EDID 1.4 base block (128 bytes, no extensions) describing one
 * digital display whose preferred (and only detailed) mode is the current
 * display size at 60 Hz, with reduced-blanking timings in the style of VESA
 * CVT-RB. Linux's virtio_gpu driver reads it with VIRTIO_GPU_CMD_GET_EDID and
 * hands it to the DRM core, which turns the detailed timing into the
 * connector's preferred mode.
 *
 * Layout: VESA E-EDID standard, release A revision 2 (EDID 1.4), section 3.
 */

export const EDID_BLOCK_SIZE = 128;
/** A detailed timing descriptor stores active sizes in 12 bits. */
export const EDID_MAX_ACTIVE = 4095;
/** Pixel clock field: u16 in units of 10 kHz. */
const MAX_CLOCK_10KHZ = 0xffff;

const HEADER = [0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];
/** Three-letter PNP manufacturer id: "BJR" (Belljar). */
const MANUFACTURER = 'BJR';
const PRODUCT_CODE = 0x0001;
/** Year of manufacture, stored as year − 1990. Fixed so the EDID is deterministic. */
const YEAR = 2025;
/** Pixel density used to state a physical size (the size only matters for DPI guesses). */
const ASSUMED_DPI = 96;
const DEFAULT_NAME = 'Belljar';

/** Reduced blanking: horizontal blank 160 = front porch 48 + sync 32 + back porch 80. */
const H_FRONT_PORCH = 48;
const H_SYNC = 32;
const H_BLANK = 160;
/** Vertical: front porch 3 lines, at least 6 back-porch lines, at least 460 µs of blanking. */
const V_FRONT_PORCH = 3;
const V_MIN_BACK_PORCH = 6;
const V_MIN_BLANK_US = 460;

/** sRGB primaries and D65 white point (CIE 1931 x, y). */
const CHROMATICITY = { rx: 0.64, ry: 0.33, gx: 0.3, gy: 0.6, bx: 0.15, by: 0.06, wx: 0.3127, wy: 0.329 };

export interface DetailedTiming {
  readonly width: number;
  readonly height: number;
  /** Pixel clock in units of 10 kHz (as stored). */
  readonly clock10kHz: number;
  readonly hBlank: number;
  readonly hFrontPorch: number;
  readonly hSync: number;
  readonly vBlank: number;
  readonly vFrontPorch: number;
  readonly vSync: number;
  /** Refresh rate the timing was computed for (Hz); the stored clock gives at least this. */
  readonly refresh: number;
}

/** CVT's vertical sync width depends on the aspect ratio. */
function vSyncLines(width: number, height: number): number {
  const ratios: [number, number, number][] = [
    [4, 3, 4],
    [16, 9, 5],
    [16, 10, 6],
    [5, 4, 7],
    [15, 9, 7],
  ];
  for (const [w, h, lines] of ratios) {
    if (width * h === height * w) return lines;
  }
  return 10;
}

/** Reduced-blanking timings for `width`×`height` at 60 Hz (lower if the clock field would overflow). */
export function reducedBlankingTiming(width: number, height: number): DetailedTiming {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`EDID: mode ${width}x${height} is not a positive integer size`);
  }
  if (width > EDID_MAX_ACTIVE || height > EDID_MAX_ACTIVE) {
    throw new RangeError(`EDID: mode ${width}x${height} exceeds ${EDID_MAX_ACTIVE} pixels per side`);
  }
  const vSync = vSyncLines(width, height);
  const hTotal = width + H_BLANK;
  for (let refresh = 60; refresh >= 1; refresh--) {
    // Estimated line period (µs) with the minimum blanking time taken out of the frame.
    const linePeriod = (1e6 / refresh - V_MIN_BLANK_US) / height;
    const blankLines = Math.floor(V_MIN_BLANK_US / linePeriod) + 1;
    const vBlank = Math.max(blankLines, V_FRONT_PORCH + vSync + V_MIN_BACK_PORCH);
    const clock10kHz = Math.ceil((hTotal * (height + vBlank) * refresh) / 10_000);
    if (clock10kHz <= MAX_CLOCK_10KHZ) {
      return {
        width,
        height,
        clock10kHz,
        hBlank: H_BLANK,
        hFrontPorch: H_FRONT_PORCH,
        hSync: H_SYNC,
        vBlank,
        vFrontPorch: V_FRONT_PORCH,
        vSync,
        refresh,
      };
    }
  }
  throw new RangeError(`EDID: no refresh rate fits mode ${width}x${height}`);
}

/** The 18-byte detailed timing descriptor. */
function writeDetailedTiming(out: Uint8Array, at: number, t: DetailedTiming, widthMm: number, heightMm: number): void {
  out[at] = t.clock10kHz & 0xff;
  out[at + 1] = t.clock10kHz >> 8;
  out[at + 2] = t.width & 0xff;
  out[at + 3] = t.hBlank & 0xff;
  out[at + 4] = ((t.width >> 8) << 4) | (t.hBlank >> 8);
  out[at + 5] = t.height & 0xff;
  out[at + 6] = t.vBlank & 0xff;
  out[at + 7] = ((t.height >> 8) << 4) | (t.vBlank >> 8);
  out[at + 8] = t.hFrontPorch & 0xff;
  out[at + 9] = t.hSync & 0xff;
  out[at + 10] = ((t.vFrontPorch & 0x0f) << 4) | (t.vSync & 0x0f);
  out[at + 11] = ((t.hFrontPorch >> 8) << 6) | ((t.hSync >> 8) << 4) | ((t.vFrontPorch >> 4) << 2) | (t.vSync >> 4);
  out[at + 12] = widthMm & 0xff;
  out[at + 13] = heightMm & 0xff;
  out[at + 14] = ((widthMm >> 8) << 4) | (heightMm >> 8);
  out[at + 15] = 0; // no borders
  out[at + 16] = 0;
  // Digital separate sync, +hsync, −vsync (the reduced-blanking convention).
  out[at + 17] = 0x18 | 0x02;
}

/** A display descriptor (tag 0xfc name, 0xff serial, …) holding up to 13 ASCII characters. */
function writeTextDescriptor(out: Uint8Array, at: number, tag: number, text: string): void {
  out.fill(0, at, at + 5);
  out[at + 3] = tag;
  const chars = text.slice(0, 13);
  for (let i = 0; i < 13; i++) {
    if (i < chars.length) out[at + 5 + i] = chars.charCodeAt(i) & 0x7f;
    else out[at + 5 + i] = i === chars.length ? 0x0a : 0x20;
  }
}

export interface EdidOptions {
  /** Monitor name (printable ASCII, at most 13 characters). Default "Belljar". */
  readonly name?: string;
}

/** Build the EDID for a display of `width`×`height` pixels. */
export function generateEdid(width: number, height: number, options: EdidOptions = {}): Uint8Array {
  const name = options.name ?? DEFAULT_NAME;
  if (!/^[\x20-\x7e]{1,13}$/.test(name)) throw new RangeError('EDID: name must be 1..13 printable ASCII characters');
  const timing = reducedBlankingTiming(width, height);
  const out = new Uint8Array(EDID_BLOCK_SIZE);
  out.set(HEADER, 0);

  // Vendor and product (bytes 8–17).
  const letters = [...MANUFACTURER].map((c) => c.charCodeAt(0) - 0x40);
  const vendor = (letters[0]! << 10) | (letters[1]! << 5) | letters[2]!;
  out[8] = vendor >> 8; // big-endian, unlike everything else
  out[9] = vendor & 0xff;
  out[10] = PRODUCT_CODE & 0xff;
  out[11] = PRODUCT_CODE >> 8;
  // bytes 12–15: serial number 0 (unused); 16: week unspecified
  out[17] = YEAR - 1990;
  out[18] = 1; // EDID version 1
  out[19] = 4; // revision 4

  // Basic display parameters (bytes 20–24).
  const widthMm = Math.round((width * 25.4) / ASSUMED_DPI);
  const heightMm = Math.round((height * 25.4) / ASSUMED_DPI);
  out[20] = 0x80 | (0b010 << 4); // digital input, 8 bits per primary, interface undefined
  out[21] = Math.min(255, Math.max(1, Math.round(widthMm / 10))); // cm
  out[22] = Math.min(255, Math.max(1, Math.round(heightMm / 10)));
  out[23] = 120; // gamma 2.2: (2.2 × 100) − 100
  // RGB 4:4:4, sRGB is the default colour space, the preferred timing is native.
  out[24] = 0x04 | 0x02;

  // Chromaticity (bytes 25–34): 10-bit fractions, low 2 bits packed first.
  const c = Object.fromEntries(Object.entries(CHROMATICITY).map(([k, v]) => [k, Math.round(v * 1024)])) as Record<
    keyof typeof CHROMATICITY,
    number
  >;
  out[25] = ((c.rx & 3) << 6) | ((c.ry & 3) << 4) | ((c.gx & 3) << 2) | (c.gy & 3);
  out[26] = ((c.bx & 3) << 6) | ((c.by & 3) << 4) | ((c.wx & 3) << 2) | (c.wy & 3);
  [c.rx, c.ry, c.gx, c.gy, c.bx, c.by, c.wx, c.wy].forEach((v, i) => (out[27 + i] = v >> 2));

  // Established timings (35–37): none. Standard timings (38–53): all unused (0x01 0x01).
  out.fill(0x01, 38, 54);

  // Descriptors: the preferred detailed timing, range limits, name, serial text.
  writeDetailedTiming(out, 54, timing, widthMm, heightMm);
  writeRangeLimits(out, 72, timing);
  writeTextDescriptor(out, 90, 0xfc, name);
  writeTextDescriptor(out, 108, 0xff, `${width}x${height}`);

  out[126] = 0; // no extension blocks
  out[127] = edidChecksum(out);
  return out;
}

/** Display range limits (tag 0xfd): generous bounds around the one mode. */
function writeRangeLimits(out: Uint8Array, at: number, t: DetailedTiming): void {
  const clockHz = t.clock10kHz * 10_000;
  const hTotal = t.width + t.hBlank;
  const hKHz = Math.ceil(clockHz / hTotal / 1000);
  out.fill(0, at, at + 5);
  out[at + 3] = 0xfd;
  out[at + 5] = Math.min(t.refresh, 24); // min vertical rate, Hz
  out[at + 6] = 75; // max vertical rate, Hz
  out[at + 7] = 1; // min horizontal rate, kHz
  out[at + 8] = Math.min(255, Math.max(hKHz + 1, 30)); // max horizontal rate, kHz
  out[at + 9] = Math.min(255, Math.ceil(clockHz / 10_000_000)); // max pixel clock, 10 MHz units
  out[at + 10] = 0x01; // range limits only (no GTF/CVT formula)
  out[at + 11] = 0x0a;
  out.fill(0x20, at + 12, at + 18);
}

/** The byte that makes the first 128 bytes sum to 0 modulo 256. */
export function edidChecksum(block: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < EDID_BLOCK_SIZE - 1; i++) sum += block[i] ?? 0;
  return (256 - (sum & 0xff)) & 0xff;
}
