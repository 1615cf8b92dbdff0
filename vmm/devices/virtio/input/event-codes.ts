/**
 * Numbers of the Linux input event ABI (include/uapi/linux/input-event-codes.h,
 * include/uapi/linux/input.h) and of the virtio input device (virtio 1.2,
 * section 5.8) that the virtio-input model uses. Key codes (KEY_*) live in
 * `keycodes.ts` with the DOM table. This file imports nothing.
 */

// ---- Event types (EV_*) ----
export const EV_SYN = 0x00;
export const EV_KEY = 0x01;
export const EV_REL = 0x02;
export const EV_ABS = 0x03;
export const EV_MSC = 0x04;
export const EV_SW = 0x05;
export const EV_LED = 0x11;
export const EV_SND = 0x12;
export const EV_REP = 0x14;
export const EV_FF = 0x15;
/** Largest event type (EV_MAX). */
export const EV_MAX = 0x1f;

// ---- Synchronisation (EV_SYN codes) ----
export const SYN_REPORT = 0;

// ---- Buttons (EV_KEY codes above the keyboard block) ----
export const BTN_LEFT = 0x110;
export const BTN_RIGHT = 0x111;
export const BTN_MIDDLE = 0x112;
/** "Back" thumb button (DOM MouseEvent.button 3). */
export const BTN_SIDE = 0x113;
/** "Forward" thumb button (DOM MouseEvent.button 4). */
export const BTN_EXTRA = 0x114;
export const BTN_TOUCH = 0x14a;
export const BTN_TOOL_PEN = 0x140;
export const BTN_STYLUS = 0x14b;

// ---- Relative axes (EV_REL codes) ----
export const REL_X = 0x00;
export const REL_Y = 0x01;
export const REL_HWHEEL = 0x06;
export const REL_WHEEL = 0x08;
/** High-resolution wheels: 120 units per detent (Linux ≥ 5.0). */
export const REL_WHEEL_HI_RES = 0x0b;
export const REL_HWHEEL_HI_RES = 0x0c;
/** Units of REL_WHEEL_HI_RES / REL_HWHEEL_HI_RES per wheel detent. */
export const WHEEL_HI_RES_PER_DETENT = 120;

// ---- Absolute axes (EV_ABS codes) ----
export const ABS_X = 0x00;
export const ABS_Y = 0x01;
export const ABS_Z = 0x02;
export const ABS_MT_SLOT = 0x2f;
export const ABS_MAX = 0x3f;

// ---- LEDs (EV_LED codes) ----
export const LED_NUML = 0x00;
export const LED_CAPSL = 0x01;
export const LED_SCROLLL = 0x02;
export const LED_MAX = 0x0f;

// ---- Autorepeat (EV_REP codes) ----
export const REP_DELAY = 0x00;
export const REP_PERIOD = 0x01;
export const REP_MAX = 0x01;

// ---- Input properties (INPUT_PROP_*) ----
export const INPUT_PROP_POINTER = 0x00;
export const INPUT_PROP_DIRECT = 0x01;
export const INPUT_PROP_MAX = 0x1f;

// ---- Bus types (struct input_id.bustype) ----
export const BUS_VIRTUAL = 0x06;

// ---- virtio-input config space (virtio 1.2, section 5.8.4) ----
export const VIRTIO_INPUT_CFG_UNSET = 0x00;
export const VIRTIO_INPUT_CFG_ID_NAME = 0x01;
export const VIRTIO_INPUT_CFG_ID_SERIAL = 0x02;
export const VIRTIO_INPUT_CFG_ID_DEVIDS = 0x03;
export const VIRTIO_INPUT_CFG_PROP_BITS = 0x10;
export const VIRTIO_INPUT_CFG_EV_BITS = 0x11;
export const VIRTIO_INPUT_CFG_ABS_INFO = 0x12;

/** Offsets in struct virtio_input_config: select u8, subsel u8, size u8, reserved[5], union u[128]. */
export const VIRTIO_INPUT_CONFIG_SELECT = 0;
export const VIRTIO_INPUT_CONFIG_SUBSEL = 1;
export const VIRTIO_INPUT_CONFIG_SIZE = 2;
export const VIRTIO_INPUT_CONFIG_UNION = 8;
/** Size of the union: strings, bitmaps (1024 codes), absinfo, devids. */
export const VIRTIO_INPUT_CONFIG_UNION_BYTES = 128;
/** Size of the whole struct virtio_input_config. */
export const VIRTIO_INPUT_CONFIG_BYTES = VIRTIO_INPUT_CONFIG_UNION + VIRTIO_INPUT_CONFIG_UNION_BYTES;
/** struct virtio_input_absinfo: min, max, fuzz, flat, res (le32 each). */
export const VIRTIO_INPUT_ABSINFO_BYTES = 20;
/** struct virtio_input_devids: bustype, vendor, product, version (le16 each). */
export const VIRTIO_INPUT_DEVIDS_BYTES = 8;

/** struct virtio_input_event: le16 type, le16 code, le32 value. */
export const VIRTIO_INPUT_EVENT_BYTES = 8;

/** Queue indices. */
export const VIRTIO_INPUT_EVENTQ = 0;
export const VIRTIO_INPUT_STATUSQ = 1;
