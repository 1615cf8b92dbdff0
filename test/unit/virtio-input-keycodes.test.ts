import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DOM_CODE_ALIASES,
  DOM_CODE_TABLE,
  isSupportedDomCode,
  KEY_MICMUTE,
  linuxKeyCode,
  requireLinuxKeyCode,
  SUPPORTED_DOM_CODES,
  UnknownKeyCodeError,
  UNMAPPED_DOM_CODES,
} from '../../vmm/devices/virtio/input/keycodes.js';
import { InputConfigSpace, keyboardConfig, keyboardKeyCodes } from '../../vmm/devices/virtio/input/config.js';
import {
  EV_KEY,
  VIRTIO_INPUT_CFG_EV_BITS,
  VIRTIO_INPUT_CONFIG_SIZE,
  VIRTIO_INPUT_CONFIG_UNION,
} from '../../vmm/devices/virtio/input/event-codes.js';

test('every DOM code appears once and maps to a distinct Linux code, bar the documented aliases', () => {
  const domCodes = DOM_CODE_TABLE.map(([dom]) => dom);
  assert.equal(new Set(domCodes).size, domCodes.length, 'duplicate DOM code');
  const byLinux = new Map<number, string[]>();
  for (const [dom, linux] of DOM_CODE_TABLE) byLinux.set(linux, [...(byLinux.get(linux) ?? []), dom]);
  for (const [linux, doms] of byLinux) {
    if (doms.length === 1) continue;
    // Shared codes are allowed only as alias → canonical pairs.
    const canonical = doms.filter((d) => !DOM_CODE_ALIASES.has(d));
    assert.equal(canonical.length, 1, `Linux code ${linux} is shared by ${doms.join(', ')}`);
    for (const alias of doms.filter((d) => DOM_CODE_ALIASES.has(d))) {
      assert.equal(DOM_CODE_ALIASES.get(alias), canonical[0], `${alias} is not an alias of ${canonical[0]}`);
    }
  }
  for (const [alias, canonical] of DOM_CODE_ALIASES) {
    assert.equal(linuxKeyCode(alias), linuxKeyCode(canonical), `alias ${alias}`);
    assert.notEqual(linuxKeyCode(alias), undefined);
  }
  assert.deepEqual(SUPPORTED_DOM_CODES, domCodes);
});

test('every mapped Linux code is in the keyboard EV_KEY bitmap the guest reads', () => {
  const space = new InputConfigSpace(keyboardConfig());
  space.select(VIRTIO_INPUT_CFG_EV_BITS, EV_KEY);
  const size = space.current[VIRTIO_INPUT_CONFIG_SIZE]!;
  const bitmap = space.current.subarray(VIRTIO_INPUT_CONFIG_UNION, VIRTIO_INPUT_CONFIG_UNION + size);
  const inBitmap = (code: number) => ((bitmap[code >> 3] ?? 0) & (1 << (code & 7))) !== 0;
  const keyboardCodes = new Set(keyboardKeyCodes());
  for (const [dom, linux] of DOM_CODE_TABLE) {
    assert.ok(
      Number.isInteger(linux) && linux >= 1 && linux <= KEY_MICMUTE,
      `${dom} → ${linux} outside the keyboard block`,
    );
    assert.ok(inBitmap(linux), `${dom} → ${linux} is not in the EV_KEY bitmap`);
    assert.ok(keyboardCodes.has(linux), `${dom} → ${linux}`);
  }
});

test('the table maps the usual keys to the Linux USB HID codes', () => {
  const expected: Record<string, number> = {
    KeyA: 30,
    KeyQ: 16,
    KeyZ: 44,
    Digit1: 2,
    Digit0: 11,
    Enter: 28,
    Escape: 1,
    Backspace: 14,
    Tab: 15,
    Space: 57,
    ShiftLeft: 42,
    ShiftRight: 54,
    ControlLeft: 29,
    ControlRight: 97,
    AltLeft: 56,
    AltRight: 100,
    MetaLeft: 125,
    MetaRight: 126,
    CapsLock: 58,
    ContextMenu: 127,
    ArrowUp: 103,
    ArrowDown: 108,
    ArrowLeft: 105,
    ArrowRight: 106,
    Home: 102,
    End: 107,
    PageUp: 104,
    PageDown: 109,
    Insert: 110,
    Delete: 111,
    F1: 59,
    F5: 63,
    F10: 68,
    F11: 87,
    F12: 88,
    F13: 183,
    F24: 194,
    NumLock: 69,
    Numpad0: 82,
    Numpad1: 79,
    Numpad5: 76,
    Numpad9: 73,
    NumpadEnter: 96,
    NumpadDecimal: 83,
    NumpadDivide: 98,
    NumpadMultiply: 55,
    NumpadSubtract: 74,
    NumpadAdd: 78,
    NumpadEqual: 117,
    NumpadComma: 121,
    Minus: 12,
    Equal: 13,
    BracketLeft: 26,
    BracketRight: 27,
    Backslash: 43,
    Semicolon: 39,
    Quote: 40,
    Backquote: 41,
    Comma: 51,
    Period: 52,
    Slash: 53,
    IntlBackslash: 86,
    IntlRo: 89,
    IntlYen: 124,
    PrintScreen: 99,
    ScrollLock: 70,
    Pause: 119,
    AudioVolumeMute: 113,
    AudioVolumeDown: 114,
    AudioVolumeUp: 115,
    MediaPlayPause: 164,
    BrowserBack: 158,
    Lang1: 122,
    Lang2: 123,
    KanaMode: 93,
    Convert: 92,
    NonConvert: 94,
  };
  for (const [dom, linux] of Object.entries(expected)) assert.equal(linuxKeyCode(dom), linux, dom);
});

test('a full-size ISO/ANSI keyboard is covered', () => {
  // prettier-ignore
  const fullSize = [
    ...'ABCDEFGHIJKLMNOPQRSTUVWXYZ'.split('').map((c) => `Key${c}`),
    ...'0123456789'.split('').map((d) => `Digit${d}`),
    ...Array.from({ length: 12 }, (_, i) => `F${i + 1}`),
    ...'0123456789'.split('').map((d) => `Numpad${d}`),
    'Backquote', 'Minus', 'Equal', 'Backspace', 'Tab', 'BracketLeft', 'BracketRight', 'Backslash', 'CapsLock',
    'Semicolon', 'Quote', 'Enter', 'ShiftLeft', 'IntlBackslash', 'Comma', 'Period', 'Slash', 'ShiftRight',
    'ControlLeft', 'MetaLeft', 'AltLeft', 'Space', 'AltRight', 'MetaRight', 'ContextMenu', 'ControlRight',
    'Escape', 'PrintScreen', 'ScrollLock', 'Pause', 'Insert', 'Home', 'PageUp', 'Delete', 'End', 'PageDown',
    'ArrowUp', 'ArrowLeft', 'ArrowDown', 'ArrowRight', 'NumLock', 'NumpadDivide', 'NumpadMultiply',
    'NumpadSubtract', 'NumpadAdd', 'NumpadEnter', 'NumpadDecimal',
  ];
  const missing = fullSize.filter((code) => !isSupportedDomCode(code));
  assert.deepEqual(missing, []);
});

test('codes outside the table are rejected with a clear error', () => {
  const rejected = [
    ...UNMAPPED_DOM_CODES,
    '',
    'keya',
    'KEYA',
    'Key A',
    'constructor',
    '__proto__',
    'toString',
    'hasOwnProperty',
    'F25',
    'Numpad10',
  ];
  for (const code of rejected) {
    assert.equal(linuxKeyCode(code), undefined, code);
    assert.equal(isSupportedDomCode(code), false, code);
    assert.throws(
      () => requireLinuxKeyCode(code),
      (e: unknown) => e instanceof UnknownKeyCodeError && e instanceof RangeError && e.message.includes('unknown'),
      code,
    );
  }
  for (const code of UNMAPPED_DOM_CODES) {
    assert.ok(!SUPPORTED_DOM_CODES.includes(code), `${code} is both mapped and listed as unmapped`);
  }
  // Non-strings from an untyped caller.
  for (const value of [undefined, null, 30, {}, ['KeyA']]) {
    assert.equal(linuxKeyCode(value as unknown as string), undefined);
    assert.throws(() => requireLinuxKeyCode(value as unknown as string), UnknownKeyCodeError);
  }
  assert.match(new UnknownKeyCodeError('Fn').message, /"Fn"/);
});

test('DOM code names are well formed', () => {
  for (const code of SUPPORTED_DOM_CODES) assert.match(code, /^[A-Z][A-Za-z0-9]+$/);
});
