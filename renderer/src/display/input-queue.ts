/**
 * Queues a display's input and sends it once per animation frame, in order.
 * Consecutive pointer moves collapse into the last one (the guest only needs
 * where the pointer is now); keys and buttons are never merged or dropped.
 */
import { LIMITS, type InputEvent } from '../../../electron/contract/ipc.js';

export class InputQueue {
  private events: InputEvent[] = [];
  private frame = 0;

  constructor(private readonly send: (events: readonly InputEvent[]) => void) {}

  push(event: InputEvent): void {
    const last = this.events[this.events.length - 1];
    if (event.type === 'pointer-move' && last?.type === 'pointer-move') this.events[this.events.length - 1] = event;
    else this.events.push(event);
    if (this.frame === 0) this.frame = requestAnimationFrame(() => this.flush());
  }

  /** Sends what is queued now (also on blur and unmount, so nothing is lost). */
  flush(): void {
    if (this.frame !== 0) cancelAnimationFrame(this.frame);
    this.frame = 0;
    const events = this.events;
    this.events = [];
    for (let i = 0; i < events.length; i += LIMITS.maxEventsPerBatch) {
      this.send(events.slice(i, i + LIMITS.maxEventsPerBatch));
    }
  }
}
