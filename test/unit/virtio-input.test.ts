import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../vmm/memory/guest-memory.js';
import { VirtioMmioTransport } from '../../vmm/devices/virtio/mmio-transport.js';
import {
  MMIO_CONFIG,
  MMIO_DEVICE_ID,
  MMIO_QUEUE_NUM_MAX,
  MMIO_QUEUE_SEL,
  STATUS_DEVICE_NEEDS_RESET,
  VIRTIO_F_VERSION_1,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from '../../vmm/devices/virtio/constants.js';
import {
  decodeEvent,
  encodeEvent,
  MAX_WHEEL_DETENTS,
  scaleToAxis,
  VirtioInput,
} from '../../vmm/devices/virtio/input/input.js';
import type { InputEvent, StatusEvent, VirtioInputOptions } from '../../vmm/devices/virtio/input/input.js';
import {
  ABS_POINTER_MAX,
  InputConfigSpace,
  keyboardConfig,
  tabletConfig,
} from '../../vmm/devices/virtio/input/config.js';
import type { VirtioInputConfig } from '../../vmm/devices/virtio/input/config.js';
import {
  ABS_X,
  ABS_Y,
  ABS_Z,
  BTN_EXTRA,
  BTN_LEFT,
  BTN_MIDDLE,
  BTN_RIGHT,
  BTN_SIDE,
  BTN_STYLUS,
  BTN_TOOL_PEN,
  BTN_TOUCH,
  BUS_VIRTUAL,
  EV_ABS,
  EV_KEY,
  EV_LED,
  EV_MSC,
  EV_REL,
  EV_REP,
  EV_SND,
  EV_SW,
  EV_SYN,
  INPUT_PROP_DIRECT,
  LED_CAPSL,
  LED_NUML,
  LED_SCROLLL,
  REL_HWHEEL,
  REL_HWHEEL_HI_RES,
  REL_WHEEL,
  REL_WHEEL_HI_RES,
  REL_X,
  REL_Y,
  REP_DELAY,
  SYN_REPORT,
  VIRTIO_INPUT_CFG_ABS_INFO,
  VIRTIO_INPUT_CFG_EV_BITS,
  VIRTIO_INPUT_CFG_ID_DEVIDS,
  VIRTIO_INPUT_CFG_ID_NAME,
  VIRTIO_INPUT_CFG_ID_SERIAL,
  VIRTIO_INPUT_CFG_PROP_BITS,
} from '../../vmm/devices/virtio/input/event-codes.js';
import {
  KEY_A,
  KEY_B,
  KEY_ENTER,
  KEY_LEFTSHIFT,
  KEY_MICMUTE,
  UnknownKeyCodeError,
} from '../../vmm/devices/virtio/input/keycodes.js';
import { assertChangedOnlyIn, FakeIrq, GuestDriver, readN, snapshot, writeN } from './virtio-harness.js';
import type { GuestRing } from './virtio-harness.js';

const RAM = 0x20_0000;
const EVT_RING = 0x1000;
const STS_RING = 0x3000;
const EVT_RING_2 = 0x8000;
const STS_RING_2 = 0xa000;
/** Event buffer slot i lives at EVT_BUF + 16 i: 8 bytes of event, 8 bytes that must stay untouched. */
const EVT_BUF = 0x4_0000;
const STS_BUF = 0x6_0000;
const SLOTS = 64;

const SYN: InputEvent = { type: EV_SYN, code: SYN_REPORT, value: 0 };
const key = (code: number, value: number): InputEvent => ({ type: EV_KEY, code, value });
const abs = (code: number, value: number): InputEvent => ({ type: EV_ABS, code, value });
const rel = (code: number, value: number): InputEvent => ({ type: EV_REL, code, value });

/**
 * The guest side, the way drivers/virtio/virtio_input.c works: one 8-byte
 * buffer per chain, buffers re-posted after their event was read, status
 * events sent as one device-readable buffer each. Also keeps the evdev state
 * (held keys, axes) the delivered events amount to.
 */
class GuestInput {
  evt!: GuestRing;
  sts!: GuestRing;
  readonly keys = new Set<number>();
  readonly axes = new Map<number, number>();
  private readonly bufferOf = new Map<number, number>();
  private nextSlot = 0;
  private nextStatusSlot = 0;
  private seen = 0;

  constructor(
    readonly driver: GuestDriver,
    readonly memory: GuestMemory,
  ) {}

  bringUp(evtBase = EVT_RING, stsBase = STS_RING): void {
    const [evt, sts] = this.driver.bringUp([evtBase, stsBase]);
    this.evt = evt!;
    this.sts = sts!;
    this.bufferOf.clear();
    this.nextSlot = 0;
    this.nextStatusSlot = 0;
    this.seen = 0;
    this.keys.clear();
    this.axes.clear();
  }

  /** virtinput_fill_evt: post `n` one-event buffers, then kick. */
  post(n: number): void {
    for (let i = 0; i < n; i++) {
      const addr = EVT_BUF + 16 * (this.nextSlot++ % SLOTS);
      const head = this.evt.addChain([{ addr, len: 8, writable: true }]);
      this.bufferOf.set(head, addr);
    }
    this.driver.notify(0);
  }

  /** virtinput_recv_events: read the used buffers in order; re-post them when `recycle`. */
  receive(recycle = false): InputEvent[] {
    const got: InputEvent[] = [];
    while (this.seen !== this.evt.usedIdx) {
      const elem = this.evt.usedElem(this.seen);
      this.seen = (this.seen + 1) & 0xffff;
      assert.equal(elem.len, 8, 'used length of an event buffer');
      const addr = this.bufferOf.get(elem.id);
      assert.ok(addr !== undefined, `used id ${elem.id} was never posted`);
      const event = decodeEvent(this.memory.read(addr, 8));
      got.push(event);
      if (event.type === EV_KEY) {
        if (event.value) this.keys.add(event.code);
        else this.keys.delete(event.code);
      } else if (event.type === EV_ABS) {
        this.axes.set(event.code, event.value);
      }
    }
    if (recycle && got.length > 0) this.post(got.length);
    return got;
  }

  /** Receive and re-post until nothing more arrives. */
  drain(): InputEvent[] {
    const all: InputEvent[] = [];
    for (;;) {
      const got = this.receive(true);
      if (got.length === 0) return all;
      all.push(...got);
    }
  }

  /** virtinput_send_status: one device-readable event buffer on the statusq. */
  sendStatus(type: number, code: number, value: number, len = 8): number {
    const addr = STS_BUF + 16 * (this.nextStatusSlot++ % 16);
    this.memory.write(addr, encodeEvent({ type, code, value }));
    const head = this.sts.addChain([{ addr, len, writable: false }]);
    this.driver.notify(1);
    return head;
  }
}

function setup(kind: 'keyboard' | 'tablet' | VirtioInputConfig = 'keyboard', options: VirtioInputOptions = {}) {
  const memory = GuestMemory.allocate(RAM);
  const irq = new FakeIrq();
  const device =
    kind === 'keyboard'
      ? VirtioInput.keyboard(options)
      : kind === 'tablet'
        ? VirtioInput.tablet(options)
        : new VirtioInput(kind, options);
  const transport = new VirtioMmioTransport(device, memory, irq);
  const driver = new GuestDriver(transport, memory);
  const guest = new GuestInput(driver, memory);
  return { memory, irq, device, transport, driver, guest };
}

function ready(kind: 'keyboard' | 'tablet' = 'keyboard', options: VirtioInputOptions = {}, buffers = SLOTS) {
  const s = setup(kind, options);
  s.guest.bringUp();
  if (buffers > 0) s.guest.post(buffers);
  return s;
}

/** Everything the guest could have written or the device could have filled. */
function allowedRanges(guest: GuestInput): [number, number][] {
  const ranges: [number, number][] = [
    [guest.evt.base, guest.evt.byteLength],
    [guest.sts.base, guest.sts.byteLength],
    [STS_BUF, 16 * 16],
  ];
  for (let i = 0; i < SLOTS; i++) ranges.push([EVT_BUF + 16 * i, 8]);
  return ranges;
}

// ---------------------------------------------------------------- config space, read the Linux way

function cfgSelect(dev: VirtioMmioTransport, select: number, subsel: number): number {
  writeN(dev, MMIO_CONFIG + 0, 1, select);
  writeN(dev, MMIO_CONFIG + 1, 1, subsel);
  return Number(readN(dev, MMIO_CONFIG + 2, 1));
}

function cfgUnion(dev: VirtioMmioTransport, length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => Number(readN(dev, MMIO_CONFIG + 8 + i, 1)));
}

function cfgI32(dev: VirtioMmioTransport, offset: number): number {
  return Number(BigInt.asIntN(32, readN(dev, MMIO_CONFIG + 8 + offset, 4)));
}

interface Probed {
  name: string;
  serial: string;
  ids: { bustype: number; vendor: number; product: number; version: number };
  props: Set<number>;
  ev: Set<number>;
  bits: Map<number, Set<number>>;
  abs: Map<number, { min: number; max: number; fuzz: number; flat: number; res: number }>;
}

/** virtinput_probe(), step by step. */
function linuxProbe(dev: VirtioMmioTransport): Probed {
  const string = (select: number): string => {
    const size = cfgSelect(dev, select, 0);
    const bytes = cfgUnion(dev, Math.min(size, 64));
    const nul = bytes.indexOf(0);
    return String.fromCharCode(...(nul < 0 ? bytes : bytes.subarray(0, nul)));
  };
  const bitsOf = (select: number, subsel: number): Set<number> | undefined => {
    const size = cfgSelect(dev, select, subsel);
    if (size === 0) return undefined;
    const bytes = cfgUnion(dev, size);
    const set = new Set<number>();
    bytes.forEach((b, i) => {
      for (let bit = 0; bit < 8; bit++) if (b & (1 << bit)) set.add(8 * i + bit);
    });
    return set;
  };
  const name = string(VIRTIO_INPUT_CFG_ID_NAME);
  const serial = string(VIRTIO_INPUT_CFG_ID_SERIAL);
  let ids = { bustype: BUS_VIRTUAL, vendor: 0, product: 0, version: 0 };
  if (cfgSelect(dev, VIRTIO_INPUT_CFG_ID_DEVIDS, 0) >= 8) {
    const u = cfgUnion(dev, 8);
    const v = new DataView(u.buffer);
    ids = {
      bustype: v.getUint16(0, true),
      vendor: v.getUint16(2, true),
      product: v.getUint16(4, true),
      version: v.getUint16(6, true),
    };
  }
  const props = bitsOf(VIRTIO_INPUT_CFG_PROP_BITS, 0) ?? new Set<number>();
  const ev = new Set<number>();
  if (cfgSelect(dev, VIRTIO_INPUT_CFG_EV_BITS, EV_REP) > 0) ev.add(EV_REP);
  const bits = new Map<number, Set<number>>();
  for (const type of [EV_KEY, EV_REL, EV_ABS, EV_MSC, EV_SW, EV_LED, EV_SND]) {
    const set = bitsOf(VIRTIO_INPUT_CFG_EV_BITS, type);
    if (!set) continue;
    ev.add(type);
    bits.set(type, set);
  }
  const absInfo = new Map<number, { min: number; max: number; fuzz: number; flat: number; res: number }>();
  for (const code of bits.get(EV_ABS) ?? []) {
    cfgSelect(dev, VIRTIO_INPUT_CFG_ABS_INFO, code);
    absInfo.set(code, {
      min: cfgI32(dev, 0),
      max: cfgI32(dev, 4),
      fuzz: cfgI32(dev, 8),
      flat: cfgI32(dev, 12),
      res: cfgI32(dev, 16),
    });
  }
  return { name, serial, ids, props, ev, bits, abs: absInfo };
}

/** udev's input_id builtin (test_pointers + test_key), reduced to what these devices can hit. */
function udevInputId(p: Probed): string[] {
  const out = new Set<string>();
  const keys = p.bits.get(EV_KEY) ?? new Set<number>();
  const axes = p.bits.get(EV_ABS) ?? new Set<number>();
  const rels = p.bits.get(EV_REL) ?? new Set<number>();
  const BTN_TOOL_FINGER = 0x145;
  const joystickButtons = [0x120, 0x130, 0x101]; // BTN_TRIGGER, BTN_A, BTN_1
  if (p.ev.has(EV_KEY)) {
    const direct = p.props.has(INPUT_PROP_DIRECT);
    if (p.ev.has(EV_ABS) && axes.has(ABS_X) && axes.has(ABS_Y)) {
      if (keys.has(BTN_STYLUS) || keys.has(BTN_TOOL_PEN)) out.add('ID_INPUT_TABLET');
      else if (keys.has(BTN_TOOL_FINGER) && !direct) out.add('ID_INPUT_TOUCHPAD');
      else if (keys.has(BTN_LEFT)) out.add('ID_INPUT_MOUSE');
      else if (keys.has(BTN_TOUCH) || direct) out.add('ID_INPUT_TOUCHSCREEN');
      else if (joystickButtons.some((b) => keys.has(b))) out.add('ID_INPUT_JOYSTICK');
    }
    if (p.ev.has(EV_REL) && rels.has(REL_X) && rels.has(REL_Y) && keys.has(BTN_LEFT)) out.add('ID_INPUT_MOUSE');
    if ([...keys].some((k) => k > 0 && k < 0x100)) out.add('ID_INPUT_KEY');
    let keyboard = true;
    for (let k = 1; k < 32; k++) if (!keys.has(k)) keyboard = false;
    if (keyboard) out.add('ID_INPUT_KEYBOARD');
  }
  return [...out].sort();
}

test('virtio-input identifies itself with two queues and no device features', () => {
  const { transport, driver } = setup('keyboard');
  assert.equal(driver.read(MMIO_DEVICE_ID), 18);
  assert.equal(transport.deviceFeatures, VIRTIO_F_VERSION_1);
  assert.equal(transport.queueCount, 2);
  driver.write(MMIO_QUEUE_SEL, 0);
  assert.equal(driver.read(MMIO_QUEUE_NUM_MAX), 64);
  driver.write(MMIO_QUEUE_SEL, 1);
  assert.equal(driver.read(MMIO_QUEUE_NUM_MAX), 16);
});

test('the keyboard answers the Linux probe as a full keyboard with autorepeat and LEDs', () => {
  const { transport } = setup('keyboard');
  const p = linuxProbe(transport);
  assert.equal(p.name, 'Belljar Virtio Keyboard');
  assert.equal(p.serial, 'belljar-keyboard-0');
  assert.deepEqual(p.ids, { bustype: BUS_VIRTUAL, vendor: 0x4a42, product: 1, version: 1 });
  assert.deepEqual([...p.props], []);
  assert.deepEqual(
    [...p.ev].sort((a, b) => a - b),
    [EV_KEY, EV_LED, EV_REP],
  );
  const keys = p.bits.get(EV_KEY)!;
  for (const code of [KEY_A, KEY_B, KEY_ENTER, KEY_LEFTSHIFT, KEY_MICMUTE]) assert.ok(keys.has(code), `key ${code}`);
  for (let code = 1; code < 32; code++) assert.ok(keys.has(code), `key ${code}`);
  for (const code of [0, 84, 195, 249, 255, BTN_LEFT]) assert.ok(!keys.has(code), `key ${code} must not be declared`);
  assert.deepEqual([...p.bits.get(EV_LED)!].sort(), [LED_NUML, LED_CAPSL, LED_SCROLLL]);
  assert.equal(p.abs.size, 0);
  assert.deepEqual(udevInputId(p), ['ID_INPUT_KEY', 'ID_INPUT_KEYBOARD']);
  // Exact sizes: strings without NUL, bitmaps up to their last byte.
  assert.equal(cfgSelect(transport, VIRTIO_INPUT_CFG_ID_NAME, 0), 'Belljar Virtio Keyboard'.length);
  assert.equal(cfgSelect(transport, VIRTIO_INPUT_CFG_EV_BITS, EV_KEY), (KEY_MICMUTE >> 3) + 1);
  assert.equal(cfgSelect(transport, VIRTIO_INPUT_CFG_EV_BITS, EV_LED), 1);
  assert.deepEqual([...cfgUnion(transport, 2)], [0x07, 0]);
  assert.equal(cfgSelect(transport, VIRTIO_INPUT_CFG_EV_BITS, EV_REP), 1);
  assert.equal(cfgSelect(transport, VIRTIO_INPUT_CFG_ID_DEVIDS, 0), 8);
  assert.equal(cfgSelect(transport, VIRTIO_INPUT_CFG_PROP_BITS, 0), 0);
  assert.equal(cfgSelect(transport, VIRTIO_INPUT_CFG_ABS_INFO, ABS_X), 0);
});

test('the tablet answers the Linux probe as an absolute pointer (udev: mouse, like QEMU virtio-tablet)', () => {
  const { transport } = setup('tablet');
  const p = linuxProbe(transport);
  assert.equal(p.name, 'Belljar Virtio Tablet');
  assert.equal(p.serial, 'belljar-tablet-0');
  assert.deepEqual(p.ids, { bustype: BUS_VIRTUAL, vendor: 0x4a42, product: 3, version: 1 });
  assert.deepEqual(
    [...p.ev].sort((a, b) => a - b),
    [EV_KEY, EV_REL, EV_ABS],
  );
  assert.deepEqual(
    [...p.bits.get(EV_KEY)!].sort((a, b) => a - b),
    [BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA],
  );
  assert.deepEqual([...p.bits.get(EV_ABS)!].sort(), [ABS_X, ABS_Y]);
  assert.deepEqual(
    [...p.bits.get(EV_REL)!].sort((a, b) => a - b),
    [REL_HWHEEL, REL_WHEEL, REL_WHEEL_HI_RES, REL_HWHEEL_HI_RES],
  );
  const axis = { min: 0, max: 32767, fuzz: 0, flat: 0, res: 0 };
  assert.deepEqual(p.abs.get(ABS_X), axis);
  assert.deepEqual(p.abs.get(ABS_Y), axis);
  assert.deepEqual([...p.props], []);
  assert.deepEqual(udevInputId(p), ['ID_INPUT_MOUSE']);
  assert.equal(cfgSelect(transport, VIRTIO_INPUT_CFG_ABS_INFO, ABS_X), 20);
  assert.equal(cfgSelect(transport, VIRTIO_INPUT_CFG_ABS_INFO, ABS_Z), 0);
  assert.equal(cfgSelect(transport, VIRTIO_INPUT_CFG_EV_BITS, EV_ABS), 1);
  assert.deepEqual([...cfgUnion(transport, 1)], [0x03]);
  assert.equal(cfgSelect(transport, VIRTIO_INPUT_CFG_EV_BITS, EV_LED), 0);
  assert.equal(cfgSelect(transport, VIRTIO_INPUT_CFG_EV_BITS, EV_REP), 0);
});

test('select/subsel: unsupported pairs read size 0 and a zero union; only select and subsel are writable', () => {
  const { transport } = setup('keyboard');
  const zero = new Array(128).fill(0);
  // Leave data in the union, then ask for things the device does not have.
  for (const [select, subsel] of [
    [0x00, 0x00], // VIRTIO_INPUT_CFG_UNSET
    [0x7f, 0x00], // unknown select
    [VIRTIO_INPUT_CFG_ID_NAME, 1], // subsel must be zero
    [VIRTIO_INPUT_CFG_ID_DEVIDS, 3],
    [VIRTIO_INPUT_CFG_EV_BITS, EV_SYN],
    [VIRTIO_INPUT_CFG_EV_BITS, EV_ABS],
    [VIRTIO_INPUT_CFG_EV_BITS, 0xff],
    [VIRTIO_INPUT_CFG_ABS_INFO, ABS_X],
    [VIRTIO_INPUT_CFG_PROP_BITS, 0],
  ] as const) {
    assert.ok(cfgSelect(transport, VIRTIO_INPUT_CFG_EV_BITS, EV_KEY) > 0);
    assert.equal(cfgSelect(transport, select, subsel), 0, `select ${select} subsel ${subsel}`);
    assert.deepEqual([...cfgUnion(transport, 128)], zero);
    assert.equal(Number(readN(transport, MMIO_CONFIG + 0, 1)), select);
    assert.equal(Number(readN(transport, MMIO_CONFIG + 1, 1)), subsel);
  }
  // The name is not NUL-terminated by the device, and nothing follows it.
  const size = cfgSelect(transport, VIRTIO_INPUT_CFG_ID_NAME, 0);
  const union = cfgUnion(transport, 128);
  assert.equal(String.fromCharCode(...union.subarray(0, size)), 'Belljar Virtio Keyboard');
  assert.deepEqual([...union.subarray(size)], new Array(128 - size).fill(0));
  // select and subsel in one 2-byte write, in either order of fields.
  writeN(transport, MMIO_CONFIG, 2, VIRTIO_INPUT_CFG_EV_BITS | (EV_LED << 8));
  assert.equal(Number(readN(transport, MMIO_CONFIG + 2, 1)), 1);
  assert.equal(Number(readN(transport, MMIO_CONFIG + 8, 1)), 0x07);
  // Writes to size, reserved and the union are ignored; reserved reads 0.
  writeN(transport, MMIO_CONFIG + 2, 1, 0x55);
  writeN(transport, MMIO_CONFIG + 4, 4, 0xffffffff);
  writeN(transport, MMIO_CONFIG + 8, 4, 0xffffffff);
  assert.equal(Number(readN(transport, MMIO_CONFIG + 2, 1)), 1);
  assert.equal(readN(transport, MMIO_CONFIG + 3, 4), 0n);
  assert.equal(Number(readN(transport, MMIO_CONFIG + 8, 4)), 0x07);
  // Wide reads, and reads past the 136-byte structure.
  assert.equal(readN(transport, MMIO_CONFIG, 4), BigInt(VIRTIO_INPUT_CFG_EV_BITS | (EV_LED << 8) | (1 << 16)));
  assert.equal(readN(transport, MMIO_CONFIG + 136, 4), 0n);
  assert.equal(readN(transport, MMIO_CONFIG + 0xf8, 8), 0n);
});

test('custom configurations are validated; input properties are answered when present', () => {
  const base = tabletConfig();
  const bad: [string, VirtioInputConfig][] = [
    ['empty name', { ...base, name: '' }],
    ['name over 63 bytes', { ...base, name: 'x'.repeat(64) }],
    ['non-ASCII name', { ...base, name: 'Tablette à la Belljar' }],
    ['control character in serial', { ...base, serial: 'a\nb' }],
    ['vendor over 16 bits', { ...base, ids: { ...base.ids, vendor: 0x10000 } }],
    ['code beyond the bitmap', { ...base, events: new Map([[EV_KEY, [1024]]]) }],
    ['EV_SYN listed', { ...base, events: new Map([[EV_SYN, [0]]]) }],
    ['event type beyond EV_MAX', { ...base, events: new Map([[0x20, [0]]]) }],
    [
      'axis without ABS_INFO',
      {
        ...base,
        events: new Map([[EV_ABS, [ABS_X, ABS_Z]]]),
        abs: new Map([[ABS_X, { min: 0, max: 1 }]]),
      },
    ],
    ['ABS_INFO without axis', { ...base, abs: new Map([...base.abs, [ABS_Z, { min: 0, max: 1 }]]) }],
    ['min above max', { ...base, abs: new Map([...base.abs, [ABS_X, { min: 5, max: 1 }]]) }],
    ['property beyond INPUT_PROP_MAX', { ...base, props: [32] }],
  ];
  for (const [what, config] of bad) assert.throws(() => new InputConfigSpace(config), RangeError, what);
  assert.throws(() => new VirtioInput(keyboardConfig(), { maxPendingEvents: 10 }), RangeError);
  assert.throws(() => new VirtioInput(keyboardConfig(), { eventQueueSize: 48 }), RangeError);

  const { transport } = setup({ ...base, props: [INPUT_PROP_DIRECT], serial: '' });
  assert.equal(cfgSelect(transport, VIRTIO_INPUT_CFG_PROP_BITS, 0), 1);
  assert.deepEqual([...cfgUnion(transport, 1)], [1 << INPUT_PROP_DIRECT]);
  assert.equal(cfgSelect(transport, VIRTIO_INPUT_CFG_ID_SERIAL, 0), 0);
  const p = linuxProbe(transport);
  assert.equal(p.serial, '');
  // Mouse buttons still win over INPUT_PROP_DIRECT in udev's input_id.
  assert.deepEqual(udevInputId(p), ['ID_INPUT_MOUSE']);
});

// ---------------------------------------------------------------- events

test('key presses land in the guest buffers in order, each followed by SYN_REPORT', () => {
  const { memory, guest, device, irq } = ready('keyboard');
  const before = snapshot(memory);
  irq.history.length = 0;
  assert.equal(device.keyDown('ShiftLeft'), true);
  assert.equal(device.keyDown('KeyA'), true);
  assert.equal(device.keyUp('KeyA'), true);
  assert.equal(device.keyUp('ShiftLeft'), true);
  assert.equal(device.keyDown('Enter'), true);
  assert.equal(irq.level, true);
  assert.deepEqual(guest.receive(), [
    key(KEY_LEFTSHIFT, 1),
    SYN,
    key(KEY_A, 1),
    SYN,
    key(KEY_A, 0),
    SYN,
    key(KEY_LEFTSHIFT, 0),
    SYN,
    key(KEY_ENTER, 1),
    SYN,
  ]);
  assert.deepEqual(device.heldKeys, [KEY_ENTER]);
  assert.equal(device.stats.deliveredEvents, 10);
  assert.equal(device.stats.pendingEvents, 0);
  // Only the first 8 bytes of each used buffer (and the rings) changed.
  assertChangedOnlyIn(memory, before, [
    [guest.evt.base, guest.evt.byteLength],
    ...Array.from({ length: 10 }, (_, i): [number, number] => [EVT_BUF + 16 * i, 8]),
  ]);
});

test('repeated key-downs (DOM auto-repeat) and stray key-ups send nothing', () => {
  const { guest, device } = ready('keyboard');
  assert.equal(device.keyDown('KeyB'), true);
  assert.equal(device.keyDown('KeyB'), false);
  assert.equal(device.keyDown('KeyB'), false);
  assert.equal(device.keyUp('KeyA'), false);
  assert.equal(device.keyUp('KeyB'), true);
  assert.equal(device.keyUp('KeyB'), false);
  assert.deepEqual(guest.receive(), [key(KEY_B, 1), SYN, key(KEY_B, 0), SYN]);
});

test('unknown key codes are rejected with a clear error and never forwarded', () => {
  const { guest, device } = ready('keyboard');
  for (const code of ['Fn', 'Power', 'Sleep', 'Unidentified', '', 'keya', '__proto__', 'constructor', 'toString']) {
    assert.throws(() => device.keyDown(code), UnknownKeyCodeError, code);
    assert.throws(() => device.keyUp(code), UnknownKeyCodeError, code);
  }
  for (const value of [undefined, null, 30, {}]) {
    assert.throws(() => device.keyDown(value as unknown as string), UnknownKeyCodeError);
  }
  assert.equal(device.stats.pendingEvents, 0);
  assert.deepEqual(guest.receive(), []);
  assert.equal(guest.evt.usedIdx, 0);
});

test('each device refuses the other one’s host calls before queueing anything', () => {
  const kbd = ready('keyboard');
  assert.throws(() => kbd.device.pointerMove(1, 1, 10, 10), /not supported/);
  assert.throws(() => kbd.device.pointerButton('left', true), /not supported/);
  assert.throws(() => kbd.device.wheel(0, 1), /not supported/);
  assert.deepEqual(kbd.guest.receive(), []);
  const tab = ready('tablet');
  assert.throws(() => tab.device.keyDown('KeyA'), /not supported/);
  assert.throws(() => tab.device.keyUp('Enter'), /not supported/);
  assert.deepEqual(tab.guest.receive(), []);
  assert.equal(tab.device.stats.pendingEvents, 0);
});

test('pointer moves scale display coordinates to 0..32767 and send only the axes that changed', () => {
  const { guest, device } = ready('tablet');
  assert.equal(device.pointerMove(0, 0, 1280, 800), true);
  assert.equal(device.pointerMove(1279, 799, 1280, 800), true);
  assert.equal(device.pointerMove(1279, 0, 1280, 800), true);
  assert.equal(device.pointerMove(1279, 0, 1280, 800), false);
  assert.equal(device.pointerMove(640, 400, 1280, 800), true);
  assert.equal(device.pointerMove(-50, 1e6, 1280, 800), true);
  assert.deepEqual(guest.receive(), [
    abs(ABS_X, 0),
    abs(ABS_Y, 0),
    SYN,
    abs(ABS_X, 32743), // ceil(1279 × 32768 / 1280)
    abs(ABS_Y, 32728), // ceil(799 × 32768 / 800)
    SYN,
    abs(ABS_Y, 0),
    SYN,
    abs(ABS_X, 16384),
    abs(ABS_Y, 16384),
    SYN,
    abs(ABS_X, 0),
    abs(ABS_Y, 32767),
    SYN,
  ]);
});

test('scaleToAxis lands every pixel on the same guest pixel and clamps to the axis', () => {
  for (const size of [1, 2, 3, 7, 640, 800, 1024, 1279, 1280, 1366, 1920, 2560, 3840, 7680, 32768]) {
    for (let x = 0; x < size; x++) {
      const v = scaleToAxis(x, size);
      assert.ok(v >= 0 && v <= ABS_POINTER_MAX, `size ${size} x ${x} → ${v}`);
      // libinput: absolute_x_transformed = v × size / (max − min + 1)
      assert.equal(Math.floor((v * size) / (ABS_POINTER_MAX + 1)), x, `size ${size} x ${x} → ${v}`);
    }
    assert.equal(scaleToAxis(-1, size), 0);
    assert.equal(scaleToAxis(-1e300, size), 0);
    assert.equal(scaleToAxis(size, size), ABS_POINTER_MAX);
    assert.equal(scaleToAxis(1e300, size), ABS_POINTER_MAX);
  }
  assert.equal(scaleToAxis(0.5, 2), 8192);
});

test('pointerMove validates its numbers and queues nothing when they are bad', () => {
  const { guest, device } = ready('tablet');
  const bad: [number, number, number, number][] = [
    [NaN, 0, 100, 100],
    [0, Infinity, 100, 100],
    [0, -Infinity, 100, 100],
    [0, 0, 0, 100],
    [0, 0, 100, -1],
    [0, 0, 100, 0.5],
    [0, 0, 1e9, 100],
    [0, 0, NaN, 100],
    ['5' as unknown as number, 0, 100, 100],
    [0, 0, 100, undefined as unknown as number],
  ];
  for (const args of bad) assert.throws(() => device.pointerMove(...args), /virtio-input/, String(args));
  assert.equal(device.stats.pendingEvents, 0);
  assert.deepEqual(guest.receive(), []);
});

test('pointer buttons are validated and sent as EV_KEY BTN_* reports', () => {
  const { guest, device } = ready('tablet');
  assert.equal(device.pointerButton('left', true), true);
  assert.equal(device.pointerButton('left', true), false);
  assert.equal(device.pointerButton('right', true), true);
  assert.equal(device.pointerButton('middle', true), true);
  assert.equal(device.pointerButton('middle', false), true);
  assert.equal(device.pointerButton('back', true), true);
  assert.equal(device.pointerButton('forward', true), true);
  assert.throws(() => device.pointerButton('primary' as 'left', true), RangeError);
  assert.throws(() => device.pointerButton('toString' as 'left', true), RangeError);
  assert.throws(() => device.pointerButton('left', 1 as unknown as boolean), TypeError);
  assert.deepEqual(guest.receive(), [
    key(BTN_LEFT, 1),
    SYN,
    key(BTN_RIGHT, 1),
    SYN,
    key(BTN_MIDDLE, 1),
    SYN,
    key(BTN_MIDDLE, 0),
    SYN,
    key(BTN_SIDE, 1),
    SYN,
    key(BTN_EXTRA, 1),
    SYN,
  ]);
  assert.equal(device.releaseAll(), true);
  assert.equal(device.releaseAll(), false);
  assert.deepEqual(guest.receive(), [key(BTN_LEFT, 0), key(BTN_RIGHT, 0), key(BTN_SIDE, 0), key(BTN_EXTRA, 0), SYN]);
});

test('the wheel sends high-resolution and detent events, keeps fractions, clamps and validates', () => {
  const { guest, device } = ready('tablet');
  assert.equal(device.wheel(0, 1), true); // one detent down
  assert.equal(device.wheel(0.5, 0), true); // half a detent right
  assert.equal(device.wheel(0.5, 0), true); // … and the other half
  assert.equal(device.wheel(0, -0.25), true);
  assert.equal(device.wheel(0, 0.25), true); // direction change drops the remainder
  assert.equal(device.wheel(0, 1e9), true); // clamped
  assert.equal(device.wheel(0, 0), false);
  assert.equal(device.wheel(0.001, -0.001), false); // below 1/120 detent
  for (const [dx, dy] of [
    [NaN, 0],
    [0, Infinity],
    ['1' as unknown as number, 0],
  ]) {
    assert.throws(() => device.wheel(dx!, dy!), TypeError);
  }
  assert.deepEqual(guest.receive(), [
    rel(REL_WHEEL_HI_RES, -120),
    rel(REL_WHEEL, -1),
    SYN,
    rel(REL_HWHEEL_HI_RES, 60),
    SYN,
    rel(REL_HWHEEL_HI_RES, 60),
    rel(REL_HWHEEL, 1),
    SYN,
    rel(REL_WHEEL_HI_RES, 30),
    SYN,
    rel(REL_WHEEL_HI_RES, -30),
    SYN,
    rel(REL_WHEEL_HI_RES, -120 * MAX_WHEEL_DETENTS),
    rel(REL_WHEEL, -MAX_WHEEL_DETENTS),
    SYN,
  ]);
});

/** Linux numbers the letter rows of a PC keyboard consecutively: Q..P from 16, A..L from 30, Z..M from 44. */
const QWERTY_ROWS = new Map(
  (
    [
      ['QWERTYUIOP', 16],
      ['ASDFGHJKL', 30],
      ['ZXCVBNM', 44],
    ] as const
  ).flatMap(([row, first]) => [...row].map((c, i): [string, number] => [c, first + i])),
);

test('300 events pass through the 64-buffer ring in order as Linux recycles its buffers', () => {
  const { guest, device, memory } = ready('keyboard');
  const before = snapshot(memory);
  const text = 'THEQUICKBROWNFOXJUMPSOVERTHELAZYDOG'.repeat(3).slice(0, 75);
  const expected: InputEvent[] = [];
  for (const c of text) {
    const code = `Key${c}`;
    device.keyDown(code);
    device.keyUp(code);
  }
  for (const c of text) {
    const linux = QWERTY_ROWS.get(c)!;
    expected.push(key(linux, 1), SYN, key(linux, 0), SYN);
  }
  // 64 were delivered at once; the rest waited host-side.
  assert.equal(device.stats.pendingEvents, 300 - 64);
  assert.deepEqual(guest.drain(), expected);
  assert.equal(device.stats.droppedReports, 0);
  assert.equal(device.stats.deliveredEvents, 300);
  assertChangedOnlyIn(memory, before, allowedRanges(guest));
});

test('input before the driver is up is not replayed; the driver gets the current state instead', () => {
  const { guest, device } = setup('keyboard');
  device.keyDown('KeyA');
  device.keyUp('KeyA');
  device.keyDown('ShiftLeft');
  assert.equal(device.stats.pendingEvents, 0);
  guest.bringUp();
  guest.post(SLOTS);
  assert.deepEqual(guest.receive(), [key(KEY_LEFTSHIFT, 1), SYN]);
  device.keyDown('KeyA');
  assert.deepEqual(guest.receive(), [key(KEY_A, 1), SYN]);
  const tab = setup('tablet');
  tab.device.pointerMove(5, 5, 10, 10);
  tab.device.wheel(0, 3);
  tab.guest.bringUp();
  tab.guest.post(SLOTS);
  assert.deepEqual(tab.guest.receive(), [abs(ABS_X, 16384), abs(ABS_Y, 16384), SYN]);
});

// ---------------------------------------------------------------- bounded queue

/** Split delivered events into reports; each must end with SYN_REPORT. */
function reportsOf(events: readonly InputEvent[]): InputEvent[][] {
  const reports: InputEvent[][] = [];
  let current: InputEvent[] = [];
  for (const e of events) {
    current.push(e);
    if (e.type === EV_SYN && e.code === SYN_REPORT) {
      reports.push(current);
      current = [];
    }
  }
  assert.deepEqual(current, [], 'a torn report at the end');
  return reports;
}

test('without guest buffers the host queue is bounded and drops whole oldest reports', () => {
  const { guest, device, memory } = ready('keyboard', { maxPendingEvents: 64 }, 0);
  const codes = ['KeyA', 'KeyB', 'KeyC', 'KeyD', 'KeyE'];
  for (let i = 0; i < 100; i++) {
    device.keyDown(codes[i % 5]!);
    device.keyUp(codes[i % 5]!);
  }
  // 100 keystrokes = 200 reports of 2 events; 64 events = the last 32 reports fit.
  assert.equal(device.stats.pendingEvents, 64);
  assert.equal(device.stats.pendingReports, 32);
  assert.equal(device.stats.droppedReports, 168);
  assert.equal(device.stats.droppedEvents, 336);
  const before = snapshot(memory);
  guest.post(SLOTS);
  const events = guest.drain();
  const reports = reportsOf(events);
  assert.equal(reports.length, 32);
  for (const r of reports) assert.equal(r.length, 2, 'one key event + SYN per report');
  // The survivors are the most recent 16 keystrokes, in order (i = 84..99).
  const expected = Array.from({ length: 16 }, (_, k) => {
    const code = [KEY_A, KEY_B, 46, 32, 18][(84 + k) % 5]!;
    return [
      [key(code, 1), SYN],
      [key(code, 0), SYN],
    ];
  }).flat();
  assert.deepEqual(reports, expected);
  assert.deepEqual([...guest.keys], []);
  assert.equal(device.stats.resyncReports, 0, 'nothing to repair: the guest and the host agree');
  assertChangedOnlyIn(memory, before, allowedRanges(guest));
});

test('a release lost to the bound is repaired by a resync once the queue drains', () => {
  const { guest, device } = ready('keyboard', { maxPendingEvents: 64 }, 2);
  device.keyDown('KeyA');
  assert.deepEqual(guest.receive(), [key(KEY_A, 1), SYN]);
  device.keyUp('KeyA'); // queued: the guest posted no more buffers
  for (let i = 0; i < 40; i++) {
    device.keyDown('KeyB');
    device.keyUp('KeyB');
  }
  assert.ok(device.stats.droppedReports >= 1);
  guest.post(SLOTS);
  const reports = reportsOf(guest.drain());
  assert.deepEqual(reports.at(-1), [key(KEY_A, 0), SYN], 'the resync releases KEY_A');
  assert.deepEqual([...guest.keys], [], 'no key stuck in the guest');
  assert.equal(device.stats.resyncReports, 1);
});

test('a key held while its press was dropped is pressed again by the resync', () => {
  const { guest, device } = ready('keyboard', { maxPendingEvents: 64 }, 0);
  device.keyDown('ShiftLeft');
  for (let i = 0; i < 40; i++) {
    device.keyDown('KeyB');
    device.keyUp('KeyB');
  }
  guest.post(SLOTS);
  guest.drain();
  assert.deepEqual([...guest.keys], [KEY_LEFTSHIFT]);
  assert.deepEqual(device.heldKeys, [KEY_LEFTSHIFT]);
});

test('a report the guest has part of is never dropped: the guest never sees a torn report', () => {
  const { guest, device } = ready('keyboard', { maxPendingEvents: 64 }, 1);
  device.keyDown('KeyA');
  assert.deepEqual(guest.receive(), [key(KEY_A, 1)]);
  for (let i = 0; i < 100; i++) {
    device.keyDown('KeyB');
    device.keyUp('KeyB');
  }
  assert.ok(device.stats.droppedReports > 0);
  assert.ok(device.stats.pendingEvents <= 64);
  guest.post(SLOTS);
  const events = guest.drain();
  assert.deepEqual(events[0], SYN, 'the torn report is completed first');
  for (const r of reportsOf(events.slice(1))) assert.equal(r.length, 2);
});

test('queued pointer motion is merged, never dropped, and keeps its place after other reports', () => {
  const { guest, device } = ready('tablet', { maxPendingEvents: 64 }, 0);
  for (let i = 0; i < 1000; i++) device.pointerMove(i % 800, 10, 800, 600);
  assert.equal(device.stats.pendingReports, 1);
  assert.equal(device.stats.pendingEvents, 3);
  assert.equal(device.stats.coalescedMotions, 999);
  assert.equal(device.stats.droppedReports, 0);
  device.pointerButton('left', true);
  device.pointerMove(400, 300, 800, 600);
  device.pointerMove(400, 310, 800, 600);
  assert.equal(device.stats.pendingReports, 3);
  guest.post(SLOTS);
  assert.deepEqual(guest.receive(), [
    abs(ABS_X, scaleToAxis(999 % 800, 800)),
    abs(ABS_Y, scaleToAxis(10, 600)),
    SYN,
    key(BTN_LEFT, 1),
    SYN,
    abs(ABS_X, 16384),
    abs(ABS_Y, scaleToAxis(310, 600)),
    SYN,
  ]);
  // A motion whose first event the guest already has is not rewritten.
  const one = ready('tablet', {}, 1);
  one.device.pointerMove(1, 1, 10, 10);
  one.device.pointerMove(2, 2, 10, 10);
  assert.deepEqual(one.guest.receive(), [abs(ABS_X, scaleToAxis(1, 10))]);
  one.guest.post(SLOTS);
  assert.deepEqual(one.guest.drain(), [
    abs(ABS_Y, scaleToAxis(1, 10)),
    SYN,
    abs(ABS_X, scaleToAxis(2, 10)),
    abs(ABS_Y, scaleToAxis(2, 10)),
    SYN,
  ]);
});

test('a driver reset discards queued input and resyncs held buttons and the pointer', () => {
  const { guest, device } = ready('tablet', {}, 8);
  device.pointerMove(100, 100, 200, 200);
  device.pointerButton('left', true);
  assert.equal(guest.receive().length, 5);
  device.pointerButton('right', true); // delivered
  guest.receive();
  for (let i = 0; i < 10; i++) device.wheel(0, 1); // 4 buffers left: some stay queued
  assert.ok(device.stats.pendingReports > 0);
  const pendingBefore = device.stats.pendingReports;
  // The guest driver re-initialises (e.g. module reload): status 0, then a new bring-up.
  guest.bringUp(EVT_RING_2, STS_RING_2);
  assert.equal(device.stats.discardedOnReset, pendingBefore);
  assert.equal(device.stats.pendingEvents, 0);
  guest.post(SLOTS);
  assert.deepEqual(guest.receive(), [key(BTN_LEFT, 1), key(BTN_RIGHT, 1), abs(ABS_X, 16384), abs(ABS_Y, 16384), SYN]);
  assert.deepEqual(device.leds, { numLock: false, capsLock: false, scrollLock: false });
});

// ---------------------------------------------------------------- status queue

test('LED status events are accepted, recorded (bounded) and returned with used length 0', () => {
  const seen: StatusEvent[] = [];
  const { guest, device, memory, driver } = ready('keyboard', {
    onStatus: (e) => {
      seen.push(e);
      throw new Error('a throwing hook changes nothing');
    },
  });
  const before = snapshot(memory);
  const head = guest.sendStatus(EV_LED, LED_CAPSL, 1);
  assert.deepEqual(guest.sts.usedElem(0), { id: head, len: 0 });
  assert.deepEqual(device.leds, { numLock: false, capsLock: true, scrollLock: false });
  guest.sendStatus(EV_LED, LED_NUML, 1);
  guest.sendStatus(EV_LED, LED_CAPSL, 0);
  guest.sendStatus(EV_LED, LED_SCROLLL, 7);
  assert.deepEqual(device.leds, { numLock: true, capsLock: false, scrollLock: true });
  guest.sendStatus(EV_REP, REP_DELAY, 250);
  // Not declared: ignored, counted, not recorded.
  guest.sendStatus(EV_LED, 5, 1);
  guest.sendStatus(EV_SND, 1, 1);
  guest.sendStatus(EV_KEY, KEY_A, 1);
  assert.equal(device.stats.statusEvents, 5);
  assert.equal(device.stats.ignoredStatusEvents, 3);
  assert.deepEqual(
    seen.map((e) => [e.type, e.code, e.value, e.seq]),
    [
      [EV_LED, LED_CAPSL, 1, 1],
      [EV_LED, LED_NUML, 1, 2],
      [EV_LED, LED_CAPSL, 0, 3],
      [EV_LED, LED_SCROLLL, 7, 4],
      [EV_REP, REP_DELAY, 250, 5],
    ],
  );
  for (let i = 0; i < 100; i++) guest.sendStatus(EV_LED, LED_NUML, i & 1);
  assert.equal(device.statusLog.length, 32);
  assert.equal(device.statusLog.at(-1)!.seq, 105);
  assert.equal(device.statusLog[0]!.seq, 74);
  assert.equal(driver.status & STATUS_DEVICE_NEEDS_RESET, 0);
  // The device never writes into status buffers.
  assertChangedOnlyIn(memory, before, [
    [guest.sts.base, guest.sts.byteLength],
    [STS_BUF, 16 * 16],
  ]);
  // The tablet declares no LEDs.
  const tab = ready('tablet');
  tab.guest.sendStatus(EV_LED, LED_CAPSL, 1);
  assert.equal(tab.device.stats.ignoredStatusEvents, 1);
  assert.deepEqual(tab.device.leds.capsLock, false);
});

test('short or write-only status buffers are returned unused; a malformed one needs a reset', () => {
  const { guest, device, driver, memory } = ready('keyboard');
  const before = snapshot(memory);
  guest.sendStatus(EV_LED, LED_CAPSL, 1, 4);
  const head = guest.sts.addChain([{ addr: STS_BUF + 0x100, len: 8, writable: true }]);
  driver.notify(1);
  assert.deepEqual(guest.sts.usedElem(1), { id: head, len: 0 });
  assert.equal(device.stats.badBuffers, 2);
  assert.equal(device.leds.capsLock, false);
  assert.equal(driver.status & STATUS_DEVICE_NEEDS_RESET, 0);
  assertChangedOnlyIn(memory, before, [
    [guest.sts.base, guest.sts.byteLength],
    [STS_BUF, 16],
  ]);
  guest.sts.addChain([{ addr: RAM - 4, len: 8, writable: false }]);
  assert.doesNotThrow(() => driver.notify(1));
  assert.equal(driver.status & STATUS_DEVICE_NEEDS_RESET, STATUS_DEVICE_NEEDS_RESET);
  // Nothing reaches the guest until it resets the device; then it gets the current state.
  const usedBefore = guest.evt.usedIdx;
  assert.doesNotThrow(() => device.keyDown('KeyA'));
  assert.equal(guest.evt.usedIdx, usedBefore);
  assert.equal(device.stats.pendingEvents, 0);
  guest.bringUp(EVT_RING_2, STS_RING_2);
  guest.post(SLOTS);
  assert.deepEqual(guest.receive(), [key(KEY_A, 1), SYN]);
});

// ---------------------------------------------------------------- hostile event buffers

test('unusable event buffers are returned empty and skipped; the event goes to the next good one', () => {
  const { guest, device, driver, memory } = ready('keyboard', {}, 0);
  const ring = guest.evt;
  const bad = [
    ring.addChain([{ addr: EVT_BUF, len: 8, writable: false }]), // device-readable
    ring.addChain([{ addr: EVT_BUF + 0x10, len: 4, writable: true }]), // too small
    ring.addChain([
      { addr: EVT_BUF + 0x20, len: 8, writable: false },
      { addr: EVT_BUF + 0x30, len: 8, writable: true },
    ]), // readable + writable
    ring.addChain([{ addr: EVT_BUF + 0x40, len: 0, writable: true }]), // empty
  ];
  const split = ring.addChain([
    { addr: EVT_BUF + 0x50, len: 3, writable: true },
    { addr: EVT_BUF + 0x60, len: 5, writable: true },
  ]);
  const large = ring.addChain([{ addr: EVT_BUF + 0x70, len: 64, writable: true }]);
  driver.notify(0);
  memory.fill(EVT_BUF, 0x100, 0xee);
  const before = snapshot(memory);
  assert.doesNotThrow(() => device.keyDown('KeyA'));
  bad.forEach((head, i) => assert.deepEqual(ring.usedElem(i), { id: head, len: 0 }));
  assert.deepEqual(ring.usedElem(4), { id: split, len: 8 });
  assert.deepEqual(ring.usedElem(5), { id: large, len: 8 });
  assert.equal(device.stats.badBuffers, 4);
  const splitBytes = new Uint8Array([...memory.read(EVT_BUF + 0x50, 3), ...memory.read(EVT_BUF + 0x60, 5)]);
  assert.deepEqual(decodeEvent(splitBytes), key(KEY_A, 1));
  assert.deepEqual(decodeEvent(memory.read(EVT_BUF + 0x70, 8)), SYN);
  assert.equal(driver.status & STATUS_DEVICE_NEEDS_RESET, 0);
  assertChangedOnlyIn(memory, before, [
    [ring.base, ring.byteLength],
    [EVT_BUF + 0x50, 3],
    [EVT_BUF + 0x60, 5],
    [EVT_BUF + 0x70, 8],
  ]);
});

test('malformed event chains put the device into DEVICE_NEEDS_RESET; the host never throws, nothing is written', () => {
  const scenarios: [string, (ring: GuestRing) => void][] = [
    ['buffer outside RAM', (ring) => ring.addChain([{ addr: RAM - 4, len: 8, writable: true }])],
    ['address ≥ 2^53', (ring) => ring.addChain([{ addr: 0xffff_ffff_ffff_f000, len: 8, writable: true }])],
    [
      'descriptor loop',
      (ring) => {
        ring.writeDesc(0, EVT_BUF, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
        ring.writeDesc(1, EVT_BUF, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
        ring.putAvail(0);
        ring.publish();
      },
    ],
    [
      'indirect descriptor',
      (ring) => {
        ring.writeDesc(0, EVT_BUF, 16, VIRTQ_DESC_F_INDIRECT, 0);
        ring.putAvail(0);
        ring.publish();
      },
    ],
    ['avail index jump', (ring) => ring.publish(ring.size + 5)],
    [
      'head out of range',
      (ring) => {
        ring.putAvail(ring.size + 3);
        ring.publish();
      },
    ],
  ];
  for (const [what, scenario] of scenarios) {
    const { guest, device, driver, memory, irq } = ready('keyboard', { maxPendingEvents: 64 }, 0);
    scenario(guest.evt);
    driver.notify(0); // nothing queued yet: the device does not even look
    assert.equal(driver.status & STATUS_DEVICE_NEEDS_RESET, 0, what);
    const before = snapshot(memory);
    assert.doesNotThrow(() => device.keyDown('KeyA'), what);
    assert.equal(driver.status & STATUS_DEVICE_NEEDS_RESET, STATUS_DEVICE_NEEDS_RESET, what);
    assert.equal(irq.level, true, what);
    // More input: no throw, no guest writes, still bounded.
    assert.doesNotThrow(() => {
      for (let i = 0; i < 100; i++) {
        device.keyUp('KeyA');
        device.keyDown('KeyA');
      }
    }, what);
    assert.doesNotThrow(() => driver.notify(0));
    assertChangedOnlyIn(memory, before, []);
    assert.ok(device.stats.pendingEvents <= 64, what);
    // The driver resets and starts over: the device works again, in sync with the host.
    guest.bringUp(EVT_RING_2, STS_RING_2);
    assert.equal(driver.status & STATUS_DEVICE_NEEDS_RESET, 0, what);
    guest.post(SLOTS);
    assert.deepEqual(guest.receive(), [key(KEY_A, 1), SYN], `${what}: resync presses the held key`);
    device.keyUp('KeyA');
    assert.deepEqual(guest.receive(), [key(KEY_A, 0), SYN], what);
  }
});

test('queue notifications for absent queues and before activation are harmless', () => {
  const { device } = setup('keyboard');
  assert.doesNotThrow(() => device.processQueue(0));
  assert.doesNotThrow(() => device.processQueue(1));
  assert.doesNotThrow(() => device.processQueue(7));
  assert.doesNotThrow(() => device.keyDown('KeyA'));
  assert.equal(device.stats.pendingEvents, 0);
});
