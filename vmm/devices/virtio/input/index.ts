/**
 * virtio-input: the device model (`VirtioInput`), its two configurations
 * (keyboard, absolute pointer), the DOM → Linux key table and the event codes.
 * See docs/input.md.
 */
export * from './config.js';
export * from './event-codes.js';
export * from './input.js';
export * from './keycodes.js';
