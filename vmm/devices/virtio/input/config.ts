/**
 * What a virtio-input device tells the driver about itself (virtio 1.2,
 * section 5.8.4): a name, a serial, input ids, input properties, the
 * supported event types with their codes, and the range of each absolute
 * axis. `InputConfigSpace` answers the driver's select/subsel queries; the
 * `keyboardConfig()` and `tabletConfig()` factories describe the two devices
 * Belljar gives a guest.
 */
import {
  ABS_X,
  ABS_Y,
  BTN_EXTRA,
  BTN_LEFT,
  BTN_MIDDLE,
  BTN_RIGHT,
  BTN_SIDE,
  BUS_VIRTUAL,
  EV_ABS,
  EV_KEY,
  EV_LED,
  EV_MAX,
  EV_REL,
  EV_REP,
  EV_SYN,
  INPUT_PROP_MAX,
  LED_CAPSL,
  LED_NUML,
  LED_SCROLLL,
  REL_HWHEEL,
  REL_HWHEEL_HI_RES,
  REL_WHEEL,
  REL_WHEEL_HI_RES,
  REP_DELAY,
  REP_PERIOD,
  VIRTIO_INPUT_ABSINFO_BYTES,
  VIRTIO_INPUT_CFG_ABS_INFO,
  VIRTIO_INPUT_CFG_EV_BITS,
  VIRTIO_INPUT_CFG_ID_DEVIDS,
  VIRTIO_INPUT_CFG_ID_NAME,
  VIRTIO_INPUT_CFG_ID_SERIAL,
  VIRTIO_INPUT_CFG_PROP_BITS,
  VIRTIO_INPUT_CONFIG_BYTES,
  VIRTIO_INPUT_CONFIG_SELECT,
  VIRTIO_INPUT_CONFIG_SIZE,
  VIRTIO_INPUT_CONFIG_SUBSEL,
  VIRTIO_INPUT_CONFIG_UNION,
  VIRTIO_INPUT_CONFIG_UNION_BYTES,
  VIRTIO_INPUT_DEVIDS_BYTES,
} from './event-codes.js';
import { KEY_ESC, KEY_MICMUTE, UNDEFINED_KEYBOARD_CODES } from './keycodes.js';

/** struct input_id. */
export interface InputIds {
  readonly bustype: number;
  readonly vendor: number;
  readonly product: number;
  readonly version: number;
}

/** struct input_absinfo as virtio carries it (min and max are signed). */
export interface AbsInfo {
  readonly min: number;
  readonly max: number;
  readonly fuzz?: number;
  readonly flat?: number;
  /** Units per millimetre (0: unknown). */
  readonly res?: number;
}

export interface VirtioInputConfig {
  /** ID_NAME: printable ASCII, 1..63 bytes (Linux copies at most 64 bytes incl. its NUL). */
  readonly name: string;
  /** ID_SERIAL: printable ASCII, 0..63 bytes (becomes the evdev `uniq`). */
  readonly serial: string;
  /** ID_DEVIDS. */
  readonly ids: InputIds;
  /** PROP_BITS: INPUT_PROP_* numbers. Empty: PROP_BITS answers size 0. */
  readonly props: readonly number[];
  /**
   * EV_BITS: event type (EV_*) → supported codes. A type with an empty code
   * list is still supported (size 1, empty bitmap). EV_SYN is implicit and
   * must not be listed. Codes must be < 1024 (the 128-byte bitmap).
   */
  readonly events: ReadonlyMap<number, readonly number[]>;
  /** ABS_INFO: one entry for each code of `events.get(EV_ABS)`, and no others. */
  readonly abs: ReadonlyMap<number, AbsInfo>;
}

/** Largest value of ABS_X / ABS_Y on the pointer (the axis range is 0..ABS_POINTER_MAX). */
export const ABS_POINTER_MAX = 32767;

/**
 * Input ids the Belljar devices report (BUS_VIRTUAL). The vendor is ours
 * ("BJ" read as a little-endian u16); products: 1 keyboard, 3 tablet (the
 * numbering QEMU uses for its virtio keyboard and tablet).
 */
export const BELLJAR_INPUT_VENDOR = 0x4a42;
export const BELLJAR_KEYBOARD_PRODUCT = 0x0001;
export const BELLJAR_TABLET_PRODUCT = 0x0003;
export const BELLJAR_INPUT_VERSION = 0x0001;

const MAX_STRING_BYTES = 63;
const MAX_CODE = VIRTIO_INPUT_CONFIG_UNION_BYTES * 8 - 1;

/**
 * The keyboard's EV_KEY codes: the whole keyboard block KEY_ESC..KEY_MICMUTE
 * minus the codes Linux leaves undefined. udev's input_id marks a device
 * ID_INPUT_KEYBOARD when codes 1..31 are all present.
 */
export function keyboardKeyCodes(): number[] {
  const undefinedCodes = new Set(UNDEFINED_KEYBOARD_CODES);
  const codes: number[] = [];
  for (let code = KEY_ESC; code <= KEY_MICMUTE; code++) if (!undefinedCodes.has(code)) codes.push(code);
  return codes;
}

export interface InputIdentityOptions {
  name?: string;
  serial?: string;
}

/**
 * The keyboard: every keyboard key, autorepeat (EV_REP: the guest kernel
 * repeats held keys; the host sends only presses and releases) and the
 * Num/Caps/Scroll Lock LEDs (set by the guest through the status queue).
 */
export function keyboardConfig(options: InputIdentityOptions = {}): VirtioInputConfig {
  return {
    name: options.name ?? 'Belljar Virtio Keyboard',
    serial: options.serial ?? 'belljar-keyboard-0',
    ids: {
      bustype: BUS_VIRTUAL,
      vendor: BELLJAR_INPUT_VENDOR,
      product: BELLJAR_KEYBOARD_PRODUCT,
      version: BELLJAR_INPUT_VERSION,
    },
    props: [],
    events: new Map<number, readonly number[]>([
      [EV_KEY, keyboardKeyCodes()],
      [EV_REP, [REP_DELAY, REP_PERIOD]],
      [EV_LED, [LED_NUML, LED_CAPSL, LED_SCROLLL]],
    ]),
    abs: new Map(),
  };
}

/**
 * The absolute pointer, modelled on QEMU's virtio-tablet: ABS_X/ABS_Y
 * 0..32767, mouse buttons, vertical and horizontal wheels (with the
 * high-resolution codes), and no input properties. ABS_X/ABS_Y with BTN_LEFT
 * and without BTN_TOUCH or a pen tool is what udev's input_id classifies as
 * ID_INPUT_MOUSE, and libinput then handles as a pointer with absolute motion.
 * (INPUT_PROP_DIRECT would not change udev's answer but makes other stacks
 * treat the device as a touchscreen, so it is left out, as QEMU does.)
 */
export function tabletConfig(options: InputIdentityOptions = {}): VirtioInputConfig {
  const axis: AbsInfo = { min: 0, max: ABS_POINTER_MAX, fuzz: 0, flat: 0, res: 0 };
  return {
    name: options.name ?? 'Belljar Virtio Tablet',
    serial: options.serial ?? 'belljar-tablet-0',
    ids: {
      bustype: BUS_VIRTUAL,
      vendor: BELLJAR_INPUT_VENDOR,
      product: BELLJAR_TABLET_PRODUCT,
      version: BELLJAR_INPUT_VERSION,
    },
    props: [],
    events: new Map<number, readonly number[]>([
      [EV_KEY, [BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA]],
      [EV_REL, [REL_HWHEEL, REL_WHEEL, REL_WHEEL_HI_RES, REL_HWHEEL_HI_RES]],
      [EV_ABS, [ABS_X, ABS_Y]],
    ]),
    abs: new Map([
      [ABS_X, axis],
      [ABS_Y, axis],
    ]),
  };
}

function asciiBytes(what: string, value: string, min: number): Uint8Array {
  if (typeof value !== 'string' || value.length < min || value.length > MAX_STRING_BYTES) {
    throw new RangeError(`virtio-input: ${what} must be ${min}..${MAX_STRING_BYTES} characters`);
  }
  if (!/^[\x20-\x7e]*$/.test(value)) throw new RangeError(`virtio-input: ${what} must be printable ASCII`);
  return Uint8Array.from(value, (c) => c.charCodeAt(0));
}

function checkInteger(what: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`virtio-input: ${what} ${value} is not an integer in ${min}..${max}`);
  }
}

/** A bitmap of `codes` trimmed to its last non-zero byte (at least `minBytes` long). */
function bitmap(codes: Iterable<number>, minBytes: number): Uint8Array {
  const bytes = new Uint8Array(VIRTIO_INPUT_CONFIG_UNION_BYTES);
  let length = minBytes;
  for (const code of codes) {
    bytes[code >> 3]! |= 1 << (code & 7);
    length = Math.max(length, (code >> 3) + 1);
  }
  return bytes.slice(0, length);
}

/**
 * A validated, immutable copy of a `VirtioInputConfig` with the answer to
 * every (select, subsel) pair precomputed.
 */
export class InputConfigSpace {
  /** EV type → set of codes (EV_SYN excluded). */
  readonly eventCodes: ReadonlyMap<number, ReadonlySet<number>>;
  readonly name: string;
  readonly serial: string;

  private readonly answers = new Map<number, Uint8Array>();
  private readonly bytes = new Uint8Array(VIRTIO_INPUT_CONFIG_BYTES);

  constructor(config: VirtioInputConfig) {
    this.name = config.name;
    this.serial = config.serial;
    this.answers.set(key(VIRTIO_INPUT_CFG_ID_NAME, 0), asciiBytes('name', config.name, 1));
    const serial = asciiBytes('serial', config.serial, 0);
    if (serial.length > 0) this.answers.set(key(VIRTIO_INPUT_CFG_ID_SERIAL, 0), serial);

    const ids = new Uint8Array(VIRTIO_INPUT_DEVIDS_BYTES);
    const idView = new DataView(ids.buffer);
    (['bustype', 'vendor', 'product', 'version'] as const).forEach((field, i) => {
      checkInteger(`ids.${field}`, config.ids[field], 0, 0xffff);
      idView.setUint16(2 * i, config.ids[field], true);
    });
    this.answers.set(key(VIRTIO_INPUT_CFG_ID_DEVIDS, 0), ids);

    for (const prop of config.props) checkInteger('input property', prop, 0, INPUT_PROP_MAX);
    if (config.props.length > 0) this.answers.set(key(VIRTIO_INPUT_CFG_PROP_BITS, 0), bitmap(config.props, 1));

    const eventCodes = new Map<number, ReadonlySet<number>>();
    for (const [type, codes] of config.events) {
      checkInteger('event type', type, EV_SYN + 1, EV_MAX);
      for (const code of codes) checkInteger(`event code (type ${type})`, code, 0, MAX_CODE);
      eventCodes.set(type, new Set(codes));
      // Size ≥ 1 even for an empty code list: a non-zero size is what says "type supported".
      this.answers.set(key(VIRTIO_INPUT_CFG_EV_BITS, type), bitmap(codes, 1));
    }
    this.eventCodes = eventCodes;

    const absCodes = eventCodes.get(EV_ABS) ?? new Set<number>();
    for (const code of absCodes) {
      if (!config.abs.has(code)) throw new RangeError(`virtio-input: ABS code ${code} has no ABS_INFO`);
    }
    for (const [code, info] of config.abs) {
      if (!absCodes.has(code)) throw new RangeError(`virtio-input: ABS_INFO for ${code}, which EV_ABS does not list`);
      const fields = [info.min, info.max, info.fuzz ?? 0, info.flat ?? 0, info.res ?? 0];
      fields.forEach((v) => checkInteger(`ABS_INFO ${code}`, v, -0x8000_0000, 0x7fff_ffff));
      if (info.min > info.max) throw new RangeError(`virtio-input: ABS_INFO ${code}: min > max`);
      const abs = new Uint8Array(VIRTIO_INPUT_ABSINFO_BYTES);
      const view = new DataView(abs.buffer);
      fields.forEach((v, i) => view.setInt32(4 * i, v, true));
      this.answers.set(key(VIRTIO_INPUT_CFG_ABS_INFO, code), abs);
    }
    this.select(0, 0);
  }

  /** Whether the device declares event `type` with `code`. */
  supports(type: number, code: number): boolean {
    return this.eventCodes.get(type)?.has(code) ?? false;
  }

  /** The struct virtio_input_config as the driver currently sees it. */
  get current(): Uint8Array {
    return this.bytes;
  }

  /**
   * The driver wrote `data` at config offset `offset`. Only `select` and
   * `subsel` are writable (the spec forbids writes elsewhere; they are
   * ignored). Any change re-fills `size` and the union.
   */
  write(offset: number, data: Uint8Array): void {
    let select = this.bytes[VIRTIO_INPUT_CONFIG_SELECT]!;
    let subsel = this.bytes[VIRTIO_INPUT_CONFIG_SUBSEL]!;
    for (let i = 0; i < data.length; i++) {
      if (offset + i === VIRTIO_INPUT_CONFIG_SELECT) select = data[i]!;
      else if (offset + i === VIRTIO_INPUT_CONFIG_SUBSEL) subsel = data[i]!;
    }
    this.select(select, subsel);
  }

  /** Set select/subsel and the answer: `size` 0 and a zero union for unsupported pairs. */
  select(select: number, subsel: number): void {
    const answer = this.answers.get(key(select, subsel));
    this.bytes.fill(0);
    this.bytes[VIRTIO_INPUT_CONFIG_SELECT] = select;
    this.bytes[VIRTIO_INPUT_CONFIG_SUBSEL] = subsel;
    if (!answer) return;
    this.bytes[VIRTIO_INPUT_CONFIG_SIZE] = answer.length;
    this.bytes.set(answer, VIRTIO_INPUT_CONFIG_UNION);
  }
}

function key(select: number, subsel: number): number {
  return ((select & 0xff) << 8) | (subsel & 0xff);
}
