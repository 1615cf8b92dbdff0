/**
 * virtio-input (virtio 1.2, section 5.8): one device model, configured as the
 * Belljar keyboard or the Belljar absolute pointer ("tablet").
 *
 * Queues: 0 eventq (device → driver: the guest posts device-writable buffers,
 * the device fills each with one struct virtio_input_event), 1 statusq
 * (driver → device: LED and autorepeat settings, one event per buffer).
 *
 * Host side: the VMM calls `keyDown`/`keyUp`/`pointerMove`/`pointerButton`/
 * `wheel`/`releaseAll`. Each call becomes one report (its events plus
 * EV_SYN/SYN_REPORT), queued host-side and moved into guest buffers as soon as
 * the guest has posted some, one event per buffer, in order. The host-side
 * queue is bounded (`maxPendingEvents`, default 1024 events): when a new
 * report does not fit, the oldest complete reports are dropped and counted. A
 * report the guest has already received part of is never dropped, so the
 * guest never sees a torn report. Consecutive pointer motions that are still
 * queued are merged into one report (an absolute position supersedes the
 * previous one).
 *
 * Input only queues while a driver is live (between DRIVER_OK and the next
 * reset, and not after DEVICE_NEEDS_RESET): input made while no driver
 * listens is not replayed later. A reset also discards what is queued.
 *
 * Dropped reports, resets and input made while no driver listened may leave
 * the guest believing a key or button is held when it is not (or the
 * reverse), or the pointer elsewhere. The device tracks what the guest has
 * been told and what the host intends; when the queue next drains it sends
 * "resync" reports that release or press the keys whose state differs and
 * move the pointer to the host's position. Wheel motion that was dropped or
 * made while no driver listened is lost.
 *
 * Guest buffers are untrusted. An eventq chain with device-readable
 * descriptors or fewer than 8 writable bytes is returned unfilled (used
 * length 0) and counted in `stats.badBuffers`; the pending event goes to the
 * next usable buffer. A malformed chain (out-of-RAM buffer, loop, bad ring
 * index) puts the device into DEVICE_NEEDS_RESET through the transport, like
 * every other device; from then on nothing is written to the guest until the
 * driver resets the device (the host API keeps working and keeps tracking
 * the state the resync will restore).
 *
 * Nothing here throws because of the guest. The host API throws only for host
 * mistakes (an unknown key code, a non-finite coordinate, a method the device
 * does not support), before anything is queued.
 *
 * Not thread-safe: call the host API on the thread that owns the transport.
 */
import type { GuestMemory } from '../../../memory/guest-memory.js';
import { drainQueue, readConfigBytes } from '../device.js';
import type { VirtioActivation, VirtioDevice, VirtioDeviceHost } from '../device.js';
import { isPowerOfTwo, readSegments, VirtqueueError, writeSegments } from '../queue.js';
import type { DescriptorChain, Virtqueue } from '../queue.js';
import { VIRTIO_ID_INPUT } from '../constants.js';
import { ABS_POINTER_MAX, InputConfigSpace, keyboardConfig, tabletConfig } from './config.js';
import type { InputIdentityOptions, VirtioInputConfig } from './config.js';
import {
  ABS_X,
  ABS_Y,
  BTN_EXTRA,
  BTN_LEFT,
  BTN_MIDDLE,
  BTN_RIGHT,
  BTN_SIDE,
  EV_ABS,
  EV_KEY,
  EV_LED,
  EV_REL,
  EV_REP,
  EV_SYN,
  LED_CAPSL,
  LED_NUML,
  LED_SCROLLL,
  REL_HWHEEL,
  REL_HWHEEL_HI_RES,
  REL_WHEEL,
  REL_WHEEL_HI_RES,
  REP_MAX,
  SYN_REPORT,
  VIRTIO_INPUT_EVENT_BYTES,
  VIRTIO_INPUT_EVENTQ,
  VIRTIO_INPUT_STATUSQ,
  WHEEL_HI_RES_PER_DETENT,
} from './event-codes.js';
import { requireLinuxKeyCode } from './keycodes.js';

/** One struct virtio_input_event. `value` is a signed 32-bit number. */
export interface InputEvent {
  readonly type: number;
  readonly code: number;
  readonly value: number;
}

/** A status-queue event the guest sent, as recorded by the device. */
export interface StatusEvent extends InputEvent {
  /** Running number of accepted status events (1 = first). */
  readonly seq: number;
}

export type PointerButton = 'left' | 'middle' | 'right' | 'back' | 'forward';

/** Linux button codes of `pointerButton()`. */
export const POINTER_BUTTONS: Readonly<Record<PointerButton, number>> = Object.freeze({
  left: BTN_LEFT,
  middle: BTN_MIDDLE,
  right: BTN_RIGHT,
  back: BTN_SIDE,
  forward: BTN_EXTRA,
});

export interface LedState {
  readonly numLock: boolean;
  readonly capsLock: boolean;
  readonly scrollLock: boolean;
}

export interface VirtioInputStats {
  /** Events waiting host-side (not yet in a guest buffer). */
  readonly pendingEvents: number;
  /** Reports waiting host-side (a partly delivered one counts). */
  readonly pendingReports: number;
  /** Events written into guest buffers. */
  readonly deliveredEvents: number;
  /** Whole reports dropped because the host-side queue was full. */
  readonly droppedReports: number;
  /** Events in those reports. */
  readonly droppedEvents: number;
  /** Reports discarded by a device reset. */
  readonly discardedOnReset: number;
  /** Pointer motions merged into a queued motion report. */
  readonly coalescedMotions: number;
  /** Resync reports sent after drops or resets. */
  readonly resyncReports: number;
  /** Unusable buffers (eventq: readable or < 8 bytes; statusq: < 8 readable bytes), returned with length 0. */
  readonly badBuffers: number;
  /** Status events accepted (LED, autorepeat). */
  readonly statusEvents: number;
  /** Status events ignored (types or codes the device does not declare). */
  readonly ignoredStatusEvents: number;
}

export interface VirtioInputOptions {
  /** QueueNumMax of the eventq. Default 64 (Linux posts at most 64 event buffers). */
  eventQueueSize?: number;
  /** QueueNumMax of the statusq. Default 16. */
  statusQueueSize?: number;
  /** Bound of the host-side event queue, in events (SYN_REPORT included). Default 1024, minimum 64. */
  maxPendingEvents?: number;
  /** How many accepted status events `statusLog` keeps (most recent). Default 32. */
  statusLogSize?: number;
  /** Called for every accepted status event (exceptions are swallowed). */
  onStatus?: (event: StatusEvent) => void;
}

/** Defaults and bounds (see docs/input.md). */
export const DEFAULT_EVENT_QUEUE_SIZE = 64;
export const DEFAULT_STATUS_QUEUE_SIZE = 16;
export const DEFAULT_MAX_PENDING_EVENTS = 1024;
export const MIN_MAX_PENDING_EVENTS = 64;
export const DEFAULT_STATUS_LOG_SIZE = 32;
/** Largest report the device builds: at most this many events before its SYN_REPORT. */
export const MAX_EVENTS_PER_REPORT = 16;
/** `wheel()` clamps each axis to ±this many detents per call. */
export const MAX_WHEEL_DETENTS = 16;
/** `pointerMove()` accepts display sizes 1..MAX_DISPLAY_SIZE. */
export const MAX_DISPLAY_SIZE = 65536;

/**
 * Scale a display coordinate to the pointer axis 0..32767. The guest
 * (libinput) maps an axis value v back to v * size / 32768, so
 * ceil(pos * 32768 / size) lands every integer pixel on the same pixel of a
 * guest display of the same size. Positions outside [0, size) clamp to the
 * edges.
 */
export function scaleToAxis(position: number, size: number): number {
  const v = Math.ceil((position * (ABS_POINTER_MAX + 1)) / size);
  return Math.min(ABS_POINTER_MAX, Math.max(0, v));
}

type ReportKind = 'key' | 'motion' | 'wheel' | 'resync';

interface Report {
  readonly kind: ReportKind;
  /** The events, ending with EV_SYN/SYN_REPORT. Motion reports are rewritten when merged. */
  events: InputEvent[];
}

const SYN: InputEvent = Object.freeze({ type: EV_SYN, code: SYN_REPORT, value: 0 });

export class VirtioInput implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_INPUT;
  readonly features = 0n;
  readonly queueMaxSizes: readonly number[];
  readonly configSpace: InputConfigSpace;
  readonly maxPendingEvents: number;

  private readonly statusLogSize: number;
  private readonly onStatus: ((event: StatusEvent) => void) | undefined;

  // Activation state.
  private memory: GuestMemory | undefined;
  private eventq: Virtqueue | undefined;
  private statusq: Virtqueue | undefined;
  private host: VirtioDeviceHost | undefined;
  /** Set once we asked for DEVICE_NEEDS_RESET: no guest access until reset(). */
  private failed = false;

  // Host-side event queue.
  private readonly reports: Report[] = [];
  /** Events of reports[0] already written to the guest. */
  private headDelivered = 0;
  private pending = 0;
  private resyncPending = false;

  // What the host intends, and what the guest has been told.
  private readonly hostKeys = new Set<number>();
  private readonly hostAbs = new Map<number, number>();
  private readonly guestKeys = new Set<number>();
  private readonly guestAbs = new Map<number, number>();
  /** Wheel remainders in hi-res units (1/120 detent), guest sign convention. */
  private wheelRemainder = { v: 0, h: 0 };

  // Guest → host.
  private ledBits = 0;
  private readonly statusRing: StatusEvent[] = [];

  // Counters.
  private deliveredEvents = 0;
  private droppedReports = 0;
  private droppedEvents = 0;
  private discardedOnReset = 0;
  private coalescedMotions = 0;
  private resyncReports = 0;
  private badBuffers = 0;
  private statusEvents = 0;
  private ignoredStatusEvents = 0;

  constructor(config: VirtioInputConfig, options: VirtioInputOptions = {}) {
    this.configSpace = new InputConfigSpace(config);
    const eventQueueSize = options.eventQueueSize ?? DEFAULT_EVENT_QUEUE_SIZE;
    const statusQueueSize = options.statusQueueSize ?? DEFAULT_STATUS_QUEUE_SIZE;
    for (const [what, size] of [
      ['eventq', eventQueueSize],
      ['statusq', statusQueueSize],
    ] as const) {
      if (!isPowerOfTwo(size) || size > 32768) {
        throw new RangeError(`virtio-input: ${what} size ${size} must be a power of two ≤ 32768`);
      }
    }
    const maxPending = options.maxPendingEvents ?? DEFAULT_MAX_PENDING_EVENTS;
    if (!Number.isSafeInteger(maxPending) || maxPending < MIN_MAX_PENDING_EVENTS) {
      throw new RangeError(
        `virtio-input: maxPendingEvents ${maxPending} must be an integer ≥ ${MIN_MAX_PENDING_EVENTS}`,
      );
    }
    const logSize = options.statusLogSize ?? DEFAULT_STATUS_LOG_SIZE;
    if (!Number.isSafeInteger(logSize) || logSize < 0 || logSize > 4096) {
      throw new RangeError(`virtio-input: statusLogSize ${logSize} must be an integer in 0..4096`);
    }
    this.queueMaxSizes = [eventQueueSize, statusQueueSize];
    this.maxPendingEvents = maxPending;
    this.statusLogSize = logSize;
    this.onStatus = options.onStatus;
  }

  /** The Belljar keyboard (EV_KEY keyboard block, EV_REP, EV_LED). */
  static keyboard(options: VirtioInputOptions & InputIdentityOptions = {}): VirtioInput {
    return new VirtioInput(keyboardConfig(options), options);
  }

  /** The Belljar absolute pointer (ABS_X/ABS_Y 0..32767, buttons, wheels). */
  static tablet(options: VirtioInputOptions & InputIdentityOptions = {}): VirtioInput {
    return new VirtioInput(tabletConfig(options), options);
  }

  // ------------------------------------------------------------ VirtioDevice

  readConfig(offset: number, data: Uint8Array): void {
    readConfigBytes(this.configSpace.current, offset, data);
  }

  writeConfig(offset: number, data: Uint8Array): void {
    this.configSpace.write(offset, data);
  }

  activate(ctx: VirtioActivation): void {
    const eventq = ctx.queues[VIRTIO_INPUT_EVENTQ];
    if (!eventq) throw new Error('virtio-input: the event queue was not set up');
    const host = ctx.host;
    this.memory = ctx.memory;
    this.eventq = eventq;
    this.statusq = ctx.queues[VIRTIO_INPUT_STATUSQ];
    this.failed = false;
    // Every path to DEVICE_NEEDS_RESET (ours, drainQueue's) also stops our own deliveries.
    this.host = {
      signalUsed: (queueIndex) => host.signalUsed(queueIndex),
      signalConfigChange: () => host.signalConfigChange(),
      needsReset: (reason) => {
        this.failed = true;
        host.needsReset(reason);
      },
    };
  }

  processQueue(index: number): void {
    if (index === VIRTIO_INPUT_EVENTQ) this.flush();
    else if (index === VIRTIO_INPUT_STATUSQ) this.drainStatus();
  }

  reset(): void {
    this.memory = undefined;
    this.eventq = undefined;
    this.statusq = undefined;
    this.host = undefined;
    this.failed = false;
    // A new driver instance must not get the tail of a report, nor stale
    // input meant for the old one: drop the queue, then resync to the host's
    // current state once the new driver posts buffers.
    this.discardedOnReset += this.reports.length;
    this.reports.length = 0;
    this.headDelivered = 0;
    this.pending = 0;
    this.guestKeys.clear();
    this.guestAbs.clear();
    this.wheelRemainder = { v: 0, h: 0 };
    this.resyncPending = true;
    this.ledBits = 0;
  }

  // ------------------------------------------------------------ host API

  /**
   * Press the key with DOM `KeyboardEvent.code` `code` (see keycodes.ts).
   * Returns false when the key is already down (DOM auto-repeat): the guest
   * repeats held keys itself. Throws UnknownKeyCodeError for a code outside
   * the table, and an Error when this device has no such key.
   */
  keyDown(code: string): boolean {
    return this.setKey(this.keyboardCode(code), true);
  }

  /** Release a key; returns false when it was not down. Same errors as keyDown. */
  keyUp(code: string): boolean {
    return this.setKey(this.keyboardCode(code), false);
  }

  /**
   * Move the pointer to (x, y) in display coordinates of a display of
   * `displayWidth` × `displayHeight` (e.g. CSS pixels of the element showing
   * the guest screen). Positions are clamped to the display; each axis is
   * scaled with `scaleToAxis`. Returns false when the position did not change.
   */
  pointerMove(x: number, y: number, displayWidth: number, displayHeight: number): boolean {
    this.require(EV_ABS, ABS_X, 'pointerMove');
    this.require(EV_ABS, ABS_Y, 'pointerMove');
    finite('x', x);
    finite('y', y);
    displaySize('displayWidth', displayWidth);
    displaySize('displayHeight', displayHeight);
    const ax = scaleToAxis(x, displayWidth);
    const ay = scaleToAxis(y, displayHeight);
    const events: InputEvent[] = [];
    if (this.hostAbs.get(ABS_X) !== ax) events.push({ type: EV_ABS, code: ABS_X, value: ax });
    if (this.hostAbs.get(ABS_Y) !== ay) events.push({ type: EV_ABS, code: ABS_Y, value: ay });
    if (events.length === 0) return false;
    this.hostAbs.set(ABS_X, ax);
    this.hostAbs.set(ABS_Y, ay);
    const tail = this.reports[this.reports.length - 1];
    const tailUntouched = tail !== undefined && !(tail === this.reports[0] && this.headDelivered > 0);
    if (tail?.kind === 'motion' && tailUntouched) {
      // None of the queued motion reached the guest yet: the new position supersedes it.
      const axes = new Set([...tail.events, ...events].filter((e) => e.type === EV_ABS).map((e) => e.code));
      const merged: InputEvent[] = [ABS_X, ABS_Y]
        .filter((code) => axes.has(code))
        .map((code) => ({ type: EV_ABS, code, value: this.hostAbs.get(code) ?? 0 }));
      merged.push(SYN);
      this.pending += merged.length - tail.events.length;
      tail.events = merged;
      this.coalescedMotions++;
      this.flush();
      return true;
    }
    this.enqueue('motion', events);
    return true;
  }

  /** Press or release a pointer button. Returns false when it was already in that state. */
  pointerButton(button: PointerButton, down: boolean): boolean {
    if (typeof button !== 'string' || !Object.hasOwn(POINTER_BUTTONS, button)) {
      throw new RangeError(`virtio-input: unknown pointer button ${JSON.stringify(String(button)).slice(0, 40)}`);
    }
    if (typeof down !== 'boolean') throw new TypeError('virtio-input: pointerButton: down must be a boolean');
    const code = POINTER_BUTTONS[button];
    this.require(EV_KEY, code, `pointerButton('${button}')`);
    return this.setKey(code, down);
  }

  /**
   * Scroll by `dx`, `dy` wheel detents (DOM sign convention: positive dy
   * scrolls the content down, positive dx scrolls right). Fractions are kept
   * for smooth scrolling (REL_*_HI_RES, 120 units per detent; the classic
   * REL_WHEEL/REL_HWHEEL fire once a whole detent has accumulated). Each axis
   * is clamped to ±MAX_WHEEL_DETENTS. Returns false when nothing was sent.
   */
  wheel(dx: number, dy: number): boolean {
    this.require(EV_REL, REL_WHEEL, 'wheel');
    this.require(EV_REL, REL_HWHEEL, 'wheel');
    finite('dx', dx);
    finite('dy', dy);
    const events: InputEvent[] = [];
    const axes = [
      // Linux: REL_WHEEL > 0 scrolls up (away from the user), REL_HWHEEL > 0 scrolls right.
      { delta: -dy, lo: REL_WHEEL, hi: REL_WHEEL_HI_RES, key: 'v' as const },
      { delta: dx, lo: REL_HWHEEL, hi: REL_HWHEEL_HI_RES, key: 'h' as const },
    ];
    for (const { delta, lo, hi, key } of axes) {
      const clamped = Math.min(MAX_WHEEL_DETENTS, Math.max(-MAX_WHEEL_DETENTS, delta));
      const hiRes = Math.round(clamped * WHEEL_HI_RES_PER_DETENT);
      if (hiRes === 0) continue;
      let remainder = this.wheelRemainder[key];
      if (remainder !== 0 && Math.sign(remainder) !== Math.sign(hiRes)) remainder = 0; // direction change
      remainder += hiRes;
      const detents = Math.trunc(remainder / WHEEL_HI_RES_PER_DETENT);
      remainder -= detents * WHEEL_HI_RES_PER_DETENT;
      this.wheelRemainder[key] = remainder;
      if (this.configSpace.supports(EV_REL, hi)) events.push({ type: EV_REL, code: hi, value: hiRes });
      if (detents !== 0) events.push({ type: EV_REL, code: lo, value: detents });
    }
    if (events.length === 0) return false;
    this.enqueue('wheel', events);
    return true;
  }

  /**
   * Release every key and button the host holds (e.g. when the app window
   * loses focus and will never see the key-up). Returns false when none was held.
   */
  releaseAll(): boolean {
    if (this.hostKeys.size === 0) return false;
    const codes = [...this.hostKeys].sort((a, b) => a - b);
    this.hostKeys.clear();
    for (let i = 0; i < codes.length; i += MAX_EVENTS_PER_REPORT) {
      this.enqueue(
        'key',
        codes.slice(i, i + MAX_EVENTS_PER_REPORT).map((code) => ({ type: EV_KEY, code, value: 0 })),
      );
    }
    return true;
  }

  // ------------------------------------------------------------ state

  /** LED state the guest last set (all off after a reset). */
  get leds(): LedState {
    return {
      numLock: (this.ledBits & (1 << LED_NUML)) !== 0,
      capsLock: (this.ledBits & (1 << LED_CAPSL)) !== 0,
      scrollLock: (this.ledBits & (1 << LED_SCROLLL)) !== 0,
    };
  }

  /** The most recent accepted status events, oldest first (at most `statusLogSize`). */
  get statusLog(): readonly StatusEvent[] {
    return [...this.statusRing];
  }

  /** Linux key/button codes the host currently holds down. */
  get heldKeys(): readonly number[] {
    return [...this.hostKeys].sort((a, b) => a - b);
  }

  get stats(): VirtioInputStats {
    return {
      pendingEvents: this.pending,
      pendingReports: this.reports.length,
      deliveredEvents: this.deliveredEvents,
      droppedReports: this.droppedReports,
      droppedEvents: this.droppedEvents,
      discardedOnReset: this.discardedOnReset,
      coalescedMotions: this.coalescedMotions,
      resyncReports: this.resyncReports,
      badBuffers: this.badBuffers,
      statusEvents: this.statusEvents,
      ignoredStatusEvents: this.ignoredStatusEvents,
    };
  }

  // ------------------------------------------------------------ internals

  private keyboardCode(domCode: string): number {
    const code = requireLinuxKeyCode(domCode);
    this.require(EV_KEY, code, `key ${domCode}`);
    return code;
  }

  private require(type: number, code: number, what: string): void {
    if (!this.configSpace.supports(type, code)) {
      throw new Error(`virtio-input: ${what} is not supported by "${this.configSpace.name}"`);
    }
  }

  private setKey(code: number, down: boolean): boolean {
    if (this.hostKeys.has(code) === down) return false;
    if (down) this.hostKeys.add(code);
    else this.hostKeys.delete(code);
    this.enqueue('key', [{ type: EV_KEY, code, value: down ? 1 : 0 }]);
    return true;
  }

  /** Queue one report (`events` + SYN_REPORT), making room by dropping whole old reports. */
  private enqueue(kind: ReportKind, events: InputEvent[]): void {
    if (!this.eventq || this.failed) {
      // No live driver: nothing to queue for. The next driver is brought to
      // the host's state (held keys, pointer position) by a resync instead of
      // replaying input typed while it was away.
      this.resyncPending = true;
      return;
    }
    const report: Report = { kind, events: [...events, SYN] };
    const size = report.events.length;
    while (this.pending + size > this.maxPendingEvents) {
      // reports[0] is off limits once the guest has part of it.
      const victim = this.headDelivered > 0 ? 1 : 0;
      const dropped = this.reports[victim];
      if (!dropped) break; // cannot happen: the bound is ≥ 2 × the largest report
      this.reports.splice(victim, 1);
      this.pending -= dropped.events.length;
      this.droppedReports++;
      this.droppedEvents += dropped.events.length;
      this.resyncPending = true;
    }
    this.reports.push(report);
    this.pending += size;
    this.flush();
  }

  /** The resync report(s): bring the guest's keys and axes to the host's state. */
  private enqueueResync(): void {
    const events: InputEvent[] = [];
    for (const code of [...this.guestKeys].sort((a, b) => a - b)) {
      if (!this.hostKeys.has(code)) events.push({ type: EV_KEY, code, value: 0 });
    }
    for (const code of [...this.hostKeys].sort((a, b) => a - b)) {
      if (!this.guestKeys.has(code)) events.push({ type: EV_KEY, code, value: 1 });
    }
    for (const [code, value] of this.hostAbs) {
      if (this.guestAbs.get(code) !== value) events.push({ type: EV_ABS, code, value });
    }
    for (let i = 0; i < events.length; i += MAX_EVENTS_PER_REPORT) {
      const report: Report = { kind: 'resync', events: [...events.slice(i, i + MAX_EVENTS_PER_REPORT), SYN] };
      if (this.pending + report.events.length > this.maxPendingEvents) {
        // Keep the bound; the rest is recomputed when the queue next drains.
        this.resyncPending = true;
        break;
      }
      this.reports.push(report);
      this.pending += report.events.length;
      this.resyncReports++;
    }
  }

  /**
   * Move queued events into the buffers the guest posted: one event per
   * chain, at most one ring's worth of chains per call. Never throws.
   */
  private flush(): void {
    const { memory, eventq: queue, host } = this;
    if (!memory || !queue || !host || this.failed) return;
    let used = 0;
    let failure: VirtqueueError | Error | null = null;
    try {
      for (let budget = queue.size; budget > 0; budget--) {
        if (this.reports.length === 0) {
          if (!this.resyncPending) break;
          this.resyncPending = false;
          this.enqueueResync();
          if (this.reports.length === 0) break;
        }
        const popped = queue.pop();
        if (popped.kind === 'empty') break;
        if (popped.kind === 'error') {
          failure = popped.error;
          break;
        }
        const chain = popped.chain;
        if (chain.readable.length > 0 || chain.writableBytes < VIRTIO_INPUT_EVENT_BYTES) {
          this.badBuffers++;
          failure = queue.pushUsed(chain.head, 0);
          if (failure) break;
          used++;
          continue;
        }
        const report = this.reports[0]!;
        const event = report.events[this.headDelivered]!;
        writeSegments(memory, chain.writable, 0, encodeEvent(event));
        failure = queue.pushUsed(chain.head, VIRTIO_INPUT_EVENT_BYTES);
        if (failure) break;
        used++;
        this.delivered(event);
        this.pending--;
        if (++this.headDelivered === report.events.length) {
          this.reports.shift();
          this.headDelivered = 0;
        }
      }
    } catch (e) {
      failure = e instanceof Error ? e : new Error(String(e));
    }
    try {
      if (used > 0 && queue.needsNotification()) host.signalUsed(VIRTIO_INPUT_EVENTQ);
      if (failure) host.needsReset(failure);
    } catch {
      // The transport never throws here; a host API caller must not see it if it did.
      this.failed = true;
    }
  }

  private delivered(event: InputEvent): void {
    this.deliveredEvents++;
    if (event.type === EV_KEY) {
      if (event.value) this.guestKeys.add(event.code);
      else this.guestKeys.delete(event.code);
    } else if (event.type === EV_ABS) {
      this.guestAbs.set(event.code, event.value);
    }
  }

  private drainStatus(): void {
    const { memory, statusq: queue, host } = this;
    if (!memory || !queue || !host || this.failed) return;
    try {
      drainQueue(queue, VIRTIO_INPUT_STATUSQ, host, (chain) => this.handleStatus(memory, chain));
    } catch (e) {
      host.needsReset(e instanceof Error ? e : new Error(String(e)));
    }
  }

  /** One status buffer: read its event, record it; the device writes nothing (used length 0). */
  private handleStatus(memory: GuestMemory, chain: DescriptorChain): number {
    if (chain.readableBytes < VIRTIO_INPUT_EVENT_BYTES) {
      this.badBuffers++;
      return 0;
    }
    const bytes = new Uint8Array(VIRTIO_INPUT_EVENT_BYTES);
    readSegments(memory, chain.readable, 0, bytes);
    const event = decodeEvent(bytes);
    if (!this.acceptStatus(event)) {
      this.ignoredStatusEvents++;
      return 0;
    }
    const recorded: StatusEvent = { ...event, seq: ++this.statusEvents };
    if (this.statusLogSize > 0) {
      this.statusRing.push(recorded);
      if (this.statusRing.length > this.statusLogSize) this.statusRing.shift();
    }
    if (this.onStatus) {
      try {
        this.onStatus(recorded);
      } catch {
        // A host hook must not turn a guest action into a device failure.
      }
    }
    return 0;
  }

  private acceptStatus(event: InputEvent): boolean {
    if (event.type === EV_LED) {
      if (!this.configSpace.supports(EV_LED, event.code)) return false;
      if (event.value !== 0) this.ledBits |= 1 << event.code;
      else this.ledBits &= ~(1 << event.code);
      return true;
    }
    if (event.type === EV_REP) {
      // The guest's autorepeat delay / period (ms). Recorded only: the guest repeats keys itself.
      return this.configSpace.eventCodes.has(EV_REP) && event.code <= REP_MAX;
    }
    return false;
  }
}

function finite(what: string, value: number): void {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new TypeError(`virtio-input: ${what} must be a finite number, got ${String(value)}`);
  }
}

function displaySize(what: string, value: number): void {
  finite(what, value);
  if (value < 1 || value > MAX_DISPLAY_SIZE) {
    throw new RangeError(`virtio-input: ${what} ${value} is outside 1..${MAX_DISPLAY_SIZE}`);
  }
}

/** struct virtio_input_event, little-endian. */
export function encodeEvent(event: InputEvent): Uint8Array {
  const bytes = new Uint8Array(VIRTIO_INPUT_EVENT_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, event.type, true);
  view.setUint16(2, event.code, true);
  view.setInt32(4, event.value, true);
  return bytes;
}

export function decodeEvent(bytes: Uint8Array): InputEvent {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { type: view.getUint16(0, true), code: view.getUint16(2, true), value: view.getInt32(4, true) };
}
