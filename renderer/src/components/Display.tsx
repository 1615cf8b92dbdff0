import { useEffect, useRef, useState, type KeyboardEvent, type PointerEvent } from 'react';
import type { InputEvent, PointerButton, SandboxId } from '../../../electron/contract/ipc.js';
import { useApi } from '../api-context.js';
import { fitSize, toGuestPixel, WheelAccumulator, type Size } from '../display/geometry.js';
import { InputQueue } from '../display/input-queue.js';
import { HeldKeys, isSendableCode } from '../display/keys.js';
import { FramePainter } from '../display/painter.js';

/** The guest follows the display area's size once it has stopped changing for this long. */
export const RESIZE_DEBOUNCE_MS = 300;

/** `PointerEvent.buttons` bits → the contract's buttons. */
const BUTTON_BITS: readonly (readonly [number, PointerButton])[] = [
  [1, 'left'],
  [2, 'right'],
  [4, 'middle'],
];

/**
 * One sandbox's live screen: draws its frames, forwards keyboard input while
 * focused and pointer input over it, and asks the guest to follow the area's size.
 */
export function Display({ id, title }: { readonly id: SandboxId; readonly title: string }) {
  const api = useApi();
  const areaRef = useRef<HTMLDivElement>(null);
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const cursorRef = useRef<HTMLCanvasElement>(null);
  const [guest, setGuest] = useState<Size>({ width: 0, height: 0 });
  const [area, setArea] = useState<Size>({ width: 0, height: 0 });
  const [guestCursor, setGuestCursor] = useState(false);
  const [badFrames, setBadFrames] = useState(0);

  // Input state lives in refs: it changes on every event and must not re-render.
  // (The component is keyed by sandbox id, so `id` never changes under it.)
  const [input] = useState(() => ({
    queue: new InputQueue((events) => api.sendInput(id, events)),
    keys: new HeldKeys(),
    wheel: new WheelAccumulator(),
    buttons: 0,
    lastMove: null as { x: number; y: number } | null,
  }));

  // Frames: draw each one synchronously (the transport acknowledges when this returns).
  useEffect(() => {
    const canvas = canvasRef.current;
    const cursor = cursorRef.current;
    if (!canvas || !cursor) return;
    const painter = new FramePainter(canvas, cursor);
    let cursorShown = false;
    const detach = api.attachDisplay(id, (buffer) => {
      try {
        const result = painter.paint(buffer);
        if (result.resized) setGuest({ width: result.width, height: result.height });
        if (result.cursorVisible !== cursorShown) {
          cursorShown = result.cursorVisible;
          setGuestCursor(cursorShown);
        }
      } catch {
        setBadFrames((n) => n + 1); // a malformed frame is skipped, the next full one repairs the screen
      }
    });
    return detach;
  }, [api, id]);

  // Size: the fit follows at once, the guest's resolution after a pause.
  useEffect(() => {
    const element = areaRef.current;
    if (!element) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let sent = '';
    const observer = new ResizeObserver((entries) => {
      const box = entries[entries.length - 1]?.contentRect;
      if (!box) return;
      const size = { width: Math.floor(box.width), height: Math.floor(box.height) };
      setArea(size);
      clearTimeout(timer);
      if (size.width < 1 || size.height < 1) return; // hidden: keep the guest as it is
      timer = setTimeout(() => {
        const key = `${size.width}x${size.height}`;
        if (key === sent) return;
        sent = key;
        api.resize(id, size.width, size.height);
      }, RESIZE_DEBOUNCE_MS);
    });
    observer.observe(element);
    return () => {
      observer.disconnect();
      clearTimeout(timer);
    };
  }, [api, id]);

  // Leaving: release what the guest thinks is held, and send what is queued.
  useEffect(
    () => () => {
      for (const e of input.keys.releaseAll()) input.queue.push(e);
      input.queue.flush();
    },
    [input],
  );

  // Wheel needs a non-passive listener to keep the page from scrolling.
  useEffect(() => {
    const canvas = canvasRef.current;
    if (!canvas) return;
    const onWheel = (e: WheelEvent) => {
      e.preventDefault();
      const detents = input.wheel.add(e.deltaX, e.deltaY, e.deltaMode);
      if (detents) input.queue.push({ type: 'wheel', ...detents });
    };
    canvas.addEventListener('wheel', onWheel, { passive: false });
    return () => canvas.removeEventListener('wheel', onWheel);
  }, [input]);

  const push = (event: InputEvent) => input.queue.push(event);
  function releaseAndFlush() {
    for (const e of input.keys.releaseAll()) input.queue.push(e);
    input.queue.flush();
  }

  const onKeyDown = (e: KeyboardEvent<HTMLCanvasElement>) => {
    // App shortcuts never get here (App handles them in the capture phase).
    e.preventDefault();
    if (e.repeat || !isSendableCode(e.code)) return; // the guest repeats held keys itself
    push(input.keys.down(e.code));
  };
  const onKeyUp = (e: KeyboardEvent<HTMLCanvasElement>) => {
    e.preventDefault();
    const event = input.keys.up(e.code);
    if (event) push(event);
  };

  /** Position first, then any button changes (chorded buttons arrive as pointermove). */
  const onPointer = (e: PointerEvent<HTMLCanvasElement>) => {
    const canvas = canvasRef.current;
    if (!canvas || canvas.width === 0 || canvas.height === 0) return;
    const at = toGuestPixel(e.clientX, e.clientY, canvas.getBoundingClientRect(), canvas);
    if (input.lastMove?.x !== at.x || input.lastMove?.y !== at.y) {
      input.lastMove = at;
      push({ type: 'pointer-move', ...at });
    }
    for (const [bit, button] of BUTTON_BITS) {
      const was = (input.buttons & bit) !== 0;
      const is = (e.buttons & bit) !== 0;
      if (was !== is) push({ type: 'pointer-button', button, down: is });
    }
    input.buttons = e.buttons;
  };
  const onPointerDown = (e: PointerEvent<HTMLCanvasElement>) => {
    e.preventDefault(); // keep the focus where we put it
    e.currentTarget.focus();
    e.currentTarget.setPointerCapture(e.pointerId);
    onPointer(e);
  };

  const fit = fitSize(guest, area);
  const hintId = `display-hint-${id}`;
  return (
    <div className="display">
      <div className="display-area" ref={areaRef}>
        <div className="display-screen" style={{ width: fit.width, height: fit.height }} hidden={fit.width === 0}>
          <canvas
            ref={canvasRef}
            className={`display-canvas${guestCursor ? ' guest-cursor' : ''}`}
            tabIndex={0}
            role="application"
            aria-label={`Screen of ${title} (sandboxed)`}
            aria-describedby={hintId}
            onKeyDown={onKeyDown}
            onKeyUp={onKeyUp}
            onBlur={releaseAndFlush}
            onPointerDown={onPointerDown}
            onPointerMove={onPointer}
            onPointerUp={onPointer}
            onPointerCancel={onPointer}
            onContextMenu={(e) => e.preventDefault()}
          />
          <canvas ref={cursorRef} className="display-cursor" hidden aria-hidden="true" />
        </div>
      </div>
      <p className="display-hint" id={hintId}>
        Keys typed while the screen has focus go to the sandbox. Ctrl+Shift+H leaves it; Ctrl+Shift+W closes it.
        {badFrames > 0 && ` (${badFrames} damaged display update${badFrames === 1 ? '' : 's'} skipped.)`}
      </p>
    </div>
  );
}
