/**
 * One sandbox's VMM process: started by the app with an IPC channel (see
 * control.ts), it boots the guest image with a display, keyboard, pointer and
 * vsock; serves the guest's egress proxy on vsock; tells the guest agent what
 * to open; streams frames to the parent with end-to-end flow control; and
 * ends (killing the VM) on `shutdown`, on the guest's end, or when the parent
 * goes away. Nothing outlives it: the VM's memory and fds die with the process.
 */
import { HOST_PROXY_VSOCK_PORT } from '../../guest-images/config.js';
import { parseVmConfig } from '../config.js';
import { EXIT_CODE } from '../exit-codes.js';
import { EgressProxy } from '../proxy/egress-proxy.js';
import type { DisplayFrame } from '../devices/virtio/gpu/frame-export.js';
import { GPU_CONTROL_QUEUE, GPU_CURSOR_QUEUE } from '../devices/virtio/gpu/protocol.js';
import { DISPLAY_DEVICE_NAME, Vm, type VmExit } from '../vm.js';
import { AgentLink } from './agent-link.js';
import { STALL_WATCH_MS, StallWatch } from './stall-watch.js';
import type {
  ChildMessage,
  FrameMessage,
  ParentMessage,
  SandboxInputEvent,
  SandboxSpec,
  SandboxStage,
} from './control.js';

/** The guest's vsock CID: each VM has its own userspace vsock, so every sandbox can use the same one. */
const GUEST_CID = 3;
/** The item disk is the guest's second virtio-blk disk. */
const ITEM_DISK_NAME = 'vdb';
/** Serial console kept for the failure report. */
const CONSOLE_TAIL_BYTES = 16 * 1024;
/** After reporting its end, the process leaves even if something still holds the event loop. */
const EXIT_GRACE_MS = 1000;
/** The display's queues that carry the guest's requests. */
const DISPLAY_REQUEST_QUEUES = [GPU_CONTROL_QUEUE, GPU_CURSOR_QUEUE] as const;

function send(message: ChildMessage): void {
  if (process.connected) process.send!(message);
}

const sinceStart = () => Math.round(performance.now());

/** True when the sampled pixels are not all one colour (the guest drew something). */
function hasContent(frame: DisplayFrame): boolean {
  for (const rect of frame.rects) {
    const p = rect.pixels;
    const step = Math.max(4, Math.floor(p.length / 4096 / 4) * 4);
    for (let i = step; i < p.length; i += step) {
      if (p[i] !== p[0] || p[i + 1] !== p[1] || p[i + 2] !== p[2]) return true;
    }
  }
  return false;
}

function toFrameMessage(frame: DisplayFrame): FrameMessage {
  const cursor = frame.cursor;
  return {
    type: 'frame',
    seq: frame.seq,
    enabled: frame.enabled,
    full: frame.full,
    width: frame.width,
    height: frame.height,
    rects: frame.rects.map((r) => ({ x: r.x, y: r.y, width: r.width, height: r.height, pixels: r.pixels })),
    ...(cursor
      ? {
          cursor: {
            visible: cursor.visible,
            x: cursor.x,
            y: cursor.y,
            hotX: cursor.hotX,
            hotY: cursor.hotY,
            ...(cursor.image ? { image: cursor.image } : {}),
          },
        }
      : {}),
  };
}

class Sandbox {
  private consoleTail = '';
  private readonly unacked: DisplayFrame[] = [];
  private readonly abort = new AbortController();
  private agent: AgentLink | null = null;
  private firstContentSent = false;
  /** The guest's screen size as last exported (pointer positions are scaled to it). */
  private screen = { width: 0, height: 0 };
  private stage: SandboxStage = 'booting';
  /** The display size offered to the guest, and the one its compositor was last asked to show. */
  private displaySize: { width: number; height: number };
  private guestDisplay: { width: number; height: number };
  /** Ids of `display` requests in flight: an error answering one is not the page's. */
  private readonly displayRequests = new Set<number>();
  private readonly proxy: EgressProxy;
  private readonly vm: Vm;

  constructor(private readonly spec: SandboxSpec) {
    this.vm = Vm.create(
      parseVmConfig({
        kernel: spec.kernel,
        initrd: spec.initrd,
        cmdline: spec.cmdline,
        disks: [
          { path: spec.rootfs, readOnly: true },
          ...(spec.itemDisk ? [{ path: spec.itemDisk, readOnly: true }] : []),
        ],
        memoryMiB: spec.memoryMiB,
        vcpus: spec.vcpus,
        display: spec.display,
        input: true,
        vsockCid: GUEST_CID,
      }),
      {
        serialOutput: (bytes) => {
          this.consoleTail = (this.consoleTail + Buffer.from(bytes).toString('latin1')).slice(-CONSOLE_TAIL_BYTES);
        },
      },
    );
    this.displaySize = this.guestDisplay = this.vm.devices.gpu?.displaySize ?? spec.display;
    this.proxy = new EgressProxy({
      mode: spec.network === 'web' ? 'public-web' : 'deny-all',
      ...(spec.allowForTests ? { allowForTests: spec.allowForTests } : {}),
    });
  }

  start(): void {
    const { gpu, vsock } = this.vm.devices;
    if (!gpu || !vsock) throw new Error('the sandbox VM has no display or vsock');
    vsock.listen(HOST_PROXY_VSOCK_PORT, (connection) => this.proxy.handleConnection(connection));
    gpu.frames.subscribe((frame) => this.onFrame(frame));
    void this.vm.exit.then((exit) => this.onExit(exit));
    this.vm.start();
    this.watchForStalls();
    this.setStage('booting');
    void this.connectAgent();
  }

  /** Stall diagnostics on stderr (see stall-watch.ts). */
  private watchForStalls(): void {
    const watch = new StallWatch(
      this.vm,
      {
        queues: { device: DISPLAY_DEVICE_NAME, indexes: DISPLAY_REQUEST_QUEUES },
        inputs: (['keyboard', 'pointer'] as const).flatMap((name) => {
          const device = this.vm.devices[name];
          return device ? [{ name, stats: () => device.stats }] : [];
        }),
        say: (line) => process.stderr.write(`${line}\n`),
      },
      performance.now(),
    );
    const timer = setInterval(() => void watch.check(performance.now()), STALL_WATCH_MS);
    timer.unref();
    void this.vm.exit.then(() => clearInterval(timer));
  }

  private setStage(stage: SandboxStage): void {
    this.stage = stage;
    send({ type: 'stage', stage, ms: sinceStart() });
  }

  private async connectAgent(): Promise<void> {
    const vsock = this.vm.devices.vsock!;
    try {
      this.agent = await AgentLink.connect(vsock, {
        timeoutMs: this.spec.agentTimeoutMs,
        signal: this.abort.signal,
        onMessage: (message) => {
          if ('id' in message && message.id !== undefined && this.displayRequests.delete(message.id)) {
            if (message.type === 'error')
              process.stderr.write(`sandbox: the guest kept its display: ${message.message}\n`);
            return;
          }
          if (message.type === 'status') {
            send({
              type: 'page',
              state: message.state,
              ...(message.title === undefined ? {} : { title: message.title }),
              ...(message.error === undefined ? {} : { error: message.error }),
            });
            if (message.state === 'loaded' && this.stage === 'opening') this.setStage('shown');
          } else if (message.type === 'error') {
            send({ type: 'page', state: 'error', error: message.message });
          }
        },
        onBroken: (reason) => void this.fail(reason),
      });
    } catch (error) {
      if (!this.abort.signal.aborted) await this.fail((error as Error).message);
      return;
    }
    this.setStage('guest-ready');
    this.syncGuestDisplay();
    this.agent.open(this.spec.url !== undefined ? { url: this.spec.url } : { disk: ITEM_DISK_NAME });
    this.setStage('opening');
  }

  private onFrame(frame: DisplayFrame): void {
    if (!this.firstContentSent && frame.enabled && hasContent(frame)) {
      this.firstContentSent = true;
      send({ type: 'first-content', ms: sinceStart() });
    }
    if (frame.enabled) this.screen = { width: frame.width, height: frame.height };
    // Released when the parent acknowledges it: the exporter hands out only a
    // few frames at a time and coalesces damage meanwhile (end-to-end flow control).
    this.unacked.push(frame);
    send(toFrameMessage(frame));
  }

  handle(message: ParentMessage): void {
    switch (message.type) {
      case 'input':
        for (const event of message.events) this.input(event);
        break;
      case 'resize': {
        const gpu = this.vm.devices.gpu;
        if (!gpu) break;
        this.displaySize = gpu.setDisplaySize(message.width, message.height);
        this.syncGuestDisplay();
        break;
      }
      case 'frame-ack':
        this.unacked.shift()?.release();
        break;
      case 'refresh':
        this.vm.devices.gpu?.frames.invalidate();
        break;
      case 'shutdown':
        void this.vm.stop();
        break;
      case 'start':
        break;
    }
  }

  /**
   * The display event alone changes only the guest's mode list: its compositor
   * keeps its mode until the agent asks it for the new one. Before the agent is
   * up, sway starts (or already runs) at the offered size and this waits.
   */
  private syncGuestDisplay(): void {
    const { width, height } = this.displaySize;
    if (!this.agent || (width === this.guestDisplay.width && height === this.guestDisplay.height)) return;
    this.guestDisplay = this.displaySize;
    this.displayRequests.add(this.agent.display(width, height));
  }

  private input(event: SandboxInputEvent): void {
    const { keyboard, pointer } = this.vm.devices;
    if (!keyboard || !pointer) return;
    switch (event.type) {
      case 'key':
        if (event.down) keyboard.keyDown(event.code);
        else keyboard.keyUp(event.code);
        break;
      case 'pointer-move':
        if (this.screen.width > 0) pointer.pointerMove(event.x, event.y, this.screen.width, this.screen.height);
        break;
      case 'pointer-button':
        pointer.pointerButton(event.button, event.down);
        break;
      case 'wheel':
        pointer.wheel(event.dx, event.dy);
        break;
    }
  }

  private failure: string | undefined;

  private async fail(reason: string): Promise<void> {
    this.failure ??= reason;
    await this.vm.stop();
  }

  private async onExit(exit: VmExit): Promise<void> {
    this.abort.abort();
    this.agent?.close();
    await this.proxy.close();
    for (const frame of this.unacked.splice(0)) frame.release();
    const detail = this.failure ?? (exit.kind === 'error' ? exit.detail : undefined);
    send({
      type: 'exit',
      kind: this.failure ? 'error' : exit.kind,
      ...(detail ? { detail } : {}),
      // Always: a closed sandbox's last console lines help explain what it was doing.
      console: this.consoleTail,
    });
    const code = this.failure || exit.kind === 'error' ? EXIT_CODE.error : EXIT_CODE.poweroff;
    process.exitCode = code;
    if (process.connected) process.disconnect();
    setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref();
  }
}

function main(): void {
  if (!process.send) {
    process.stderr.write('sandbox-process: start me with an IPC channel (the app does)\n');
    process.exit(EXIT_CODE.usage);
  }
  let sandbox: Sandbox | null = null;
  process.on('message', (message: ParentMessage) => {
    if (message.type === 'start' && sandbox === null) {
      try {
        sandbox = new Sandbox(message.spec);
        sandbox.start();
      } catch (error) {
        send({ type: 'exit', kind: 'error', detail: (error as Error).message });
        process.exitCode = EXIT_CODE.error;
        process.disconnect();
      }
      return;
    }
    sandbox?.handle(message);
  });
  const shutdown = () => {
    if (sandbox) sandbox.handle({ type: 'shutdown' });
    else process.exit(EXIT_CODE.poweroff);
  };
  // The app went away (closed, crashed): the VM must not outlive it.
  process.on('disconnect', shutdown);
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, shutdown);
}

main();
