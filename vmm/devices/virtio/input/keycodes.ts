/**
 * The one table from DOM `KeyboardEvent.code` strings (UI Events KeyboardEvent
 * code values, https://www.w3.org/TR/uievents-code/) to Linux key codes
 * (include/uapi/linux/input-event-codes.h), for the virtio-input keyboard.
 *
 * `code` names a physical key position, independent of the keyboard layout:
 * the guest applies its own layout (xkb) to the Linux code, exactly as for a
 * USB keyboard. Each entry follows the Linux USB HID mapping (hid-input.c),
 * which is also what Chromium uses to produce `code` on Linux, so a key read
 * by the app on a Linux host reaches the guest as the same evdev code.
 *
 * Scope (see docs/input.md): the writing-system keys (incl. the ISO, JIS and
 * ABNT keys IntlBackslash, IntlRo, IntlYen), modifiers, IME keys, the
 * control pad, arrows, the numeric keypad, Escape, F1–F24, PrintScreen,
 * ScrollLock, Pause, editing keys, media/volume keys and browser keys.
 * Deliberately NOT mapped (rejected): system keys the host must keep (Power,
 * Sleep, WakeUp, BrightnessUp/Down, DisplayToggleIntExt, ShowAllWindows), keys
 * that never reach the OS as key codes (Fn, FnLock, Hyper, Super, Turbo,
 * Suspend, Resume), and codes with no Linux USB mapping (Abort, Props,
 * NumpadBackspace, NumpadClear, NumpadClearEntry, NumpadMemory*, NumpadHash,
 * NumpadStar, NumpadChangeSign, and "Unidentified").
 *
 * Deliberate aliases (two DOM codes, one Linux code): the legacy Firefox
 * names OSLeft / OSRight for MetaLeft / MetaRight.
 *
 * This module imports nothing, so the app can share it as is.
 */

// ---- Linux key codes (the subset the table uses, plus the keyboard block bounds) ----
export const KEY_RESERVED = 0;
export const KEY_ESC = 1;
export const KEY_1 = 2;
export const KEY_2 = 3;
export const KEY_3 = 4;
export const KEY_4 = 5;
export const KEY_5 = 6;
export const KEY_6 = 7;
export const KEY_7 = 8;
export const KEY_8 = 9;
export const KEY_9 = 10;
export const KEY_0 = 11;
export const KEY_MINUS = 12;
export const KEY_EQUAL = 13;
export const KEY_BACKSPACE = 14;
export const KEY_TAB = 15;
export const KEY_Q = 16;
export const KEY_W = 17;
export const KEY_E = 18;
export const KEY_R = 19;
export const KEY_T = 20;
export const KEY_Y = 21;
export const KEY_U = 22;
export const KEY_I = 23;
export const KEY_O = 24;
export const KEY_P = 25;
export const KEY_LEFTBRACE = 26;
export const KEY_RIGHTBRACE = 27;
export const KEY_ENTER = 28;
export const KEY_LEFTCTRL = 29;
export const KEY_A = 30;
export const KEY_S = 31;
export const KEY_D = 32;
export const KEY_F = 33;
export const KEY_G = 34;
export const KEY_H = 35;
export const KEY_J = 36;
export const KEY_K = 37;
export const KEY_L = 38;
export const KEY_SEMICOLON = 39;
export const KEY_APOSTROPHE = 40;
export const KEY_GRAVE = 41;
export const KEY_LEFTSHIFT = 42;
export const KEY_BACKSLASH = 43;
export const KEY_Z = 44;
export const KEY_X = 45;
export const KEY_C = 46;
export const KEY_V = 47;
export const KEY_B = 48;
export const KEY_N = 49;
export const KEY_M = 50;
export const KEY_COMMA = 51;
export const KEY_DOT = 52;
export const KEY_SLASH = 53;
export const KEY_RIGHTSHIFT = 54;
export const KEY_KPASTERISK = 55;
export const KEY_LEFTALT = 56;
export const KEY_SPACE = 57;
export const KEY_CAPSLOCK = 58;
export const KEY_F1 = 59;
export const KEY_F2 = 60;
export const KEY_F3 = 61;
export const KEY_F4 = 62;
export const KEY_F5 = 63;
export const KEY_F6 = 64;
export const KEY_F7 = 65;
export const KEY_F8 = 66;
export const KEY_F9 = 67;
export const KEY_F10 = 68;
export const KEY_NUMLOCK = 69;
export const KEY_SCROLLLOCK = 70;
export const KEY_KP7 = 71;
export const KEY_KP8 = 72;
export const KEY_KP9 = 73;
export const KEY_KPMINUS = 74;
export const KEY_KP4 = 75;
export const KEY_KP5 = 76;
export const KEY_KP6 = 77;
export const KEY_KPPLUS = 78;
export const KEY_KP1 = 79;
export const KEY_KP2 = 80;
export const KEY_KP3 = 81;
export const KEY_KP0 = 82;
export const KEY_KPDOT = 83;
export const KEY_ZENKAKUHANKAKU = 85;
export const KEY_102ND = 86;
export const KEY_F11 = 87;
export const KEY_F12 = 88;
export const KEY_RO = 89;
export const KEY_KATAKANA = 90;
export const KEY_HIRAGANA = 91;
export const KEY_HENKAN = 92;
export const KEY_KATAKANAHIRAGANA = 93;
export const KEY_MUHENKAN = 94;
export const KEY_KPENTER = 96;
export const KEY_RIGHTCTRL = 97;
export const KEY_KPSLASH = 98;
export const KEY_SYSRQ = 99;
export const KEY_RIGHTALT = 100;
export const KEY_HOME = 102;
export const KEY_UP = 103;
export const KEY_PAGEUP = 104;
export const KEY_LEFT = 105;
export const KEY_RIGHT = 106;
export const KEY_END = 107;
export const KEY_DOWN = 108;
export const KEY_PAGEDOWN = 109;
export const KEY_INSERT = 110;
export const KEY_DELETE = 111;
export const KEY_MUTE = 113;
export const KEY_VOLUMEDOWN = 114;
export const KEY_VOLUMEUP = 115;
export const KEY_POWER = 116;
export const KEY_KPEQUAL = 117;
export const KEY_PAUSE = 119;
export const KEY_KPCOMMA = 121;
export const KEY_HANGEUL = 122;
export const KEY_HANJA = 123;
export const KEY_YEN = 124;
export const KEY_LEFTMETA = 125;
export const KEY_RIGHTMETA = 126;
export const KEY_COMPOSE = 127;
export const KEY_STOP = 128;
export const KEY_AGAIN = 129;
export const KEY_UNDO = 131;
export const KEY_FRONT = 132;
export const KEY_COPY = 133;
export const KEY_OPEN = 134;
export const KEY_PASTE = 135;
export const KEY_FIND = 136;
export const KEY_CUT = 137;
export const KEY_HELP = 138;
export const KEY_CALC = 140;
export const KEY_FILE = 144;
export const KEY_MAIL = 155;
export const KEY_BOOKMARKS = 156;
export const KEY_BACK = 158;
export const KEY_FORWARD = 159;
export const KEY_EJECTCD = 161;
export const KEY_NEXTSONG = 163;
export const KEY_PLAYPAUSE = 164;
export const KEY_PREVIOUSSONG = 165;
export const KEY_STOPCD = 166;
export const KEY_RECORD = 167;
export const KEY_REWIND = 168;
export const KEY_CONFIG = 171;
export const KEY_HOMEPAGE = 172;
export const KEY_REFRESH = 173;
export const KEY_KPLEFTPAREN = 179;
export const KEY_KPRIGHTPAREN = 180;
export const KEY_F13 = 183;
export const KEY_F14 = 184;
export const KEY_F15 = 185;
export const KEY_F16 = 186;
export const KEY_F17 = 187;
export const KEY_F18 = 188;
export const KEY_F19 = 189;
export const KEY_F20 = 190;
export const KEY_F21 = 191;
export const KEY_F22 = 192;
export const KEY_F23 = 193;
export const KEY_F24 = 194;
export const KEY_PAUSECD = 201;
export const KEY_PLAY = 207;
export const KEY_FASTFORWARD = 208;
export const KEY_SEARCH = 217;
export const KEY_SEND = 231;
export const KEY_REPLY = 232;
export const KEY_FORWARDMAIL = 233;
/** Last code of the keyboard block (below BTN_MISC = 0x100). */
export const KEY_MICMUTE = 248;

/**
 * Codes of the keyboard block that input-event-codes.h leaves undefined; the
 * keyboard's EV_KEY bitmap skips them.
 */
export const UNDEFINED_KEYBOARD_CODES: readonly number[] = [84, 195, 196, 197, 198, 199];

/**
 * DOM `KeyboardEvent.code` → Linux key code. The only table; everything else
 * (the map, the documented list) is derived from it.
 */
export const DOM_CODE_TABLE: readonly (readonly [domCode: string, linuxCode: number])[] = [
  // Writing system keys: letters
  ['KeyA', KEY_A],
  ['KeyB', KEY_B],
  ['KeyC', KEY_C],
  ['KeyD', KEY_D],
  ['KeyE', KEY_E],
  ['KeyF', KEY_F],
  ['KeyG', KEY_G],
  ['KeyH', KEY_H],
  ['KeyI', KEY_I],
  ['KeyJ', KEY_J],
  ['KeyK', KEY_K],
  ['KeyL', KEY_L],
  ['KeyM', KEY_M],
  ['KeyN', KEY_N],
  ['KeyO', KEY_O],
  ['KeyP', KEY_P],
  ['KeyQ', KEY_Q],
  ['KeyR', KEY_R],
  ['KeyS', KEY_S],
  ['KeyT', KEY_T],
  ['KeyU', KEY_U],
  ['KeyV', KEY_V],
  ['KeyW', KEY_W],
  ['KeyX', KEY_X],
  ['KeyY', KEY_Y],
  ['KeyZ', KEY_Z],
  // Writing system keys: digits and punctuation
  ['Digit1', KEY_1],
  ['Digit2', KEY_2],
  ['Digit3', KEY_3],
  ['Digit4', KEY_4],
  ['Digit5', KEY_5],
  ['Digit6', KEY_6],
  ['Digit7', KEY_7],
  ['Digit8', KEY_8],
  ['Digit9', KEY_9],
  ['Digit0', KEY_0],
  ['Minus', KEY_MINUS],
  ['Equal', KEY_EQUAL],
  ['BracketLeft', KEY_LEFTBRACE],
  ['BracketRight', KEY_RIGHTBRACE],
  ['Backslash', KEY_BACKSLASH],
  ['Semicolon', KEY_SEMICOLON],
  ['Quote', KEY_APOSTROPHE],
  ['Backquote', KEY_GRAVE],
  ['Comma', KEY_COMMA],
  ['Period', KEY_DOT],
  ['Slash', KEY_SLASH],
  ['IntlBackslash', KEY_102ND],
  ['IntlRo', KEY_RO],
  ['IntlYen', KEY_YEN],
  // Functional keys
  ['Escape', KEY_ESC],
  ['Enter', KEY_ENTER],
  ['Tab', KEY_TAB],
  ['Space', KEY_SPACE],
  ['Backspace', KEY_BACKSPACE],
  ['CapsLock', KEY_CAPSLOCK],
  ['ContextMenu', KEY_COMPOSE],
  ['ShiftLeft', KEY_LEFTSHIFT],
  ['ShiftRight', KEY_RIGHTSHIFT],
  ['ControlLeft', KEY_LEFTCTRL],
  ['ControlRight', KEY_RIGHTCTRL],
  ['AltLeft', KEY_LEFTALT],
  ['AltRight', KEY_RIGHTALT],
  ['MetaLeft', KEY_LEFTMETA],
  ['MetaRight', KEY_RIGHTMETA],
  ['OSLeft', KEY_LEFTMETA], // alias: legacy Firefox name of MetaLeft
  ['OSRight', KEY_RIGHTMETA], // alias: legacy Firefox name of MetaRight
  // IME keys (Japanese, Korean)
  ['Convert', KEY_HENKAN],
  ['NonConvert', KEY_MUHENKAN],
  ['KanaMode', KEY_KATAKANAHIRAGANA],
  ['Lang1', KEY_HANGEUL],
  ['Lang2', KEY_HANJA],
  ['Lang3', KEY_KATAKANA],
  ['Lang4', KEY_HIRAGANA],
  ['Lang5', KEY_ZENKAKUHANKAKU],
  // Control pad and arrows
  ['Insert', KEY_INSERT],
  ['Delete', KEY_DELETE],
  ['Home', KEY_HOME],
  ['End', KEY_END],
  ['PageUp', KEY_PAGEUP],
  ['PageDown', KEY_PAGEDOWN],
  ['Help', KEY_HELP],
  ['ArrowUp', KEY_UP],
  ['ArrowDown', KEY_DOWN],
  ['ArrowLeft', KEY_LEFT],
  ['ArrowRight', KEY_RIGHT],
  // Numeric keypad
  ['NumLock', KEY_NUMLOCK],
  ['Numpad0', KEY_KP0],
  ['Numpad1', KEY_KP1],
  ['Numpad2', KEY_KP2],
  ['Numpad3', KEY_KP3],
  ['Numpad4', KEY_KP4],
  ['Numpad5', KEY_KP5],
  ['Numpad6', KEY_KP6],
  ['Numpad7', KEY_KP7],
  ['Numpad8', KEY_KP8],
  ['Numpad9', KEY_KP9],
  ['NumpadAdd', KEY_KPPLUS],
  ['NumpadSubtract', KEY_KPMINUS],
  ['NumpadMultiply', KEY_KPASTERISK],
  ['NumpadDivide', KEY_KPSLASH],
  ['NumpadDecimal', KEY_KPDOT],
  ['NumpadEnter', KEY_KPENTER],
  ['NumpadEqual', KEY_KPEQUAL],
  ['NumpadComma', KEY_KPCOMMA],
  ['NumpadParenLeft', KEY_KPLEFTPAREN],
  ['NumpadParenRight', KEY_KPRIGHTPAREN],
  // Function section
  ['F1', KEY_F1],
  ['F2', KEY_F2],
  ['F3', KEY_F3],
  ['F4', KEY_F4],
  ['F5', KEY_F5],
  ['F6', KEY_F6],
  ['F7', KEY_F7],
  ['F8', KEY_F8],
  ['F9', KEY_F9],
  ['F10', KEY_F10],
  ['F11', KEY_F11],
  ['F12', KEY_F12],
  ['F13', KEY_F13],
  ['F14', KEY_F14],
  ['F15', KEY_F15],
  ['F16', KEY_F16],
  ['F17', KEY_F17],
  ['F18', KEY_F18],
  ['F19', KEY_F19],
  ['F20', KEY_F20],
  ['F21', KEY_F21],
  ['F22', KEY_F22],
  ['F23', KEY_F23],
  ['F24', KEY_F24],
  ['PrintScreen', KEY_SYSRQ],
  ['ScrollLock', KEY_SCROLLLOCK],
  ['Pause', KEY_PAUSE],
  // Editing keys (USB keyboard page 0x74–0x7e)
  ['Open', KEY_OPEN],
  ['Select', KEY_FRONT],
  ['Again', KEY_AGAIN],
  ['Undo', KEY_UNDO],
  ['Cut', KEY_CUT],
  ['Copy', KEY_COPY],
  ['Paste', KEY_PASTE],
  ['Find', KEY_FIND],
  // Media and volume keys
  ['AudioVolumeMute', KEY_MUTE],
  ['AudioVolumeDown', KEY_VOLUMEDOWN],
  ['AudioVolumeUp', KEY_VOLUMEUP],
  ['MediaPlayPause', KEY_PLAYPAUSE],
  ['MediaPlay', KEY_PLAY],
  ['MediaPause', KEY_PAUSECD],
  ['MediaStop', KEY_STOPCD],
  ['MediaRecord', KEY_RECORD],
  ['MediaFastForward', KEY_FASTFORWARD],
  ['MediaRewind', KEY_REWIND],
  ['MediaTrackNext', KEY_NEXTSONG],
  ['MediaTrackPrevious', KEY_PREVIOUSSONG],
  ['MediaSelect', KEY_CONFIG],
  ['Eject', KEY_EJECTCD],
  // Browser and launch keys
  ['BrowserBack', KEY_BACK],
  ['BrowserForward', KEY_FORWARD],
  ['BrowserRefresh', KEY_REFRESH],
  ['BrowserStop', KEY_STOP],
  ['BrowserSearch', KEY_SEARCH],
  ['BrowserFavorites', KEY_BOOKMARKS],
  ['BrowserHome', KEY_HOMEPAGE],
  ['LaunchMail', KEY_MAIL],
  ['LaunchApp1', KEY_FILE],
  ['LaunchApp2', KEY_CALC],
  ['MailReply', KEY_REPLY],
  ['MailForward', KEY_FORWARDMAIL],
  ['MailSend', KEY_SEND],
];

/** DOM codes that deliberately share a Linux code with another entry: alias → canonical DOM code. */
export const DOM_CODE_ALIASES: ReadonlyMap<string, string> = new Map([
  ['OSLeft', 'MetaLeft'],
  ['OSRight', 'MetaRight'],
]);

/**
 * DOM codes the table deliberately leaves out (see the module comment). They
 * are rejected like any unknown code; the list exists for docs and tests.
 */
export const UNMAPPED_DOM_CODES: readonly string[] = [
  'Power',
  'Sleep',
  'WakeUp',
  'BrightnessUp',
  'BrightnessDown',
  'DisplayToggleIntExt',
  'ShowAllWindows',
  'Fn',
  'FnLock',
  'Hyper',
  'Super',
  'Turbo',
  'Suspend',
  'Resume',
  'Abort',
  'Props',
  'NumpadBackspace',
  'NumpadClear',
  'NumpadClearEntry',
  'NumpadMemoryAdd',
  'NumpadMemoryClear',
  'NumpadMemoryRecall',
  'NumpadMemoryStore',
  'NumpadMemorySubtract',
  'NumpadHash',
  'NumpadStar',
  'NumpadChangeSign',
  'Unidentified',
];

const DOM_TO_LINUX: ReadonlyMap<string, number> = new Map(DOM_CODE_TABLE);

/** Every DOM code the keyboard accepts. */
export const SUPPORTED_DOM_CODES: readonly string[] = DOM_CODE_TABLE.map(([dom]) => dom);

/** The Linux key code for DOM `code`, or undefined when the code is not in the table. */
export function linuxKeyCode(domCode: string): number | undefined {
  // A Map, not an object: 'constructor', '__proto__' and friends are unknown codes.
  return typeof domCode === 'string' ? DOM_TO_LINUX.get(domCode) : undefined;
}

/** Whether the keyboard accepts DOM `code` (the app may use this to decide what to forward). */
export function isSupportedDomCode(domCode: string): boolean {
  return linuxKeyCode(domCode) !== undefined;
}

/** A DOM code that is not in the table: never forwarded to the guest. */
export class UnknownKeyCodeError extends RangeError {
  constructor(readonly domCode: unknown) {
    super(
      `virtio-input: unknown KeyboardEvent.code ${JSON.stringify(typeof domCode === 'string' ? domCode.slice(0, 64) : String(domCode))}` +
        ' (not in the DOM → Linux key table; see docs/input.md)',
    );
    this.name = 'UnknownKeyCodeError';
  }
}

/** The Linux key code for DOM `code`; throws UnknownKeyCodeError when it is not in the table. */
export function requireLinuxKeyCode(domCode: string): number {
  const code = linuxKeyCode(domCode);
  if (code === undefined) throw new UnknownKeyCodeError(domCode);
  return code;
}
