/**
 * ioeventfd: a guest write to a virtqueue's notify register signals an
 * eventfd inside KVM instead of exiting to userspace. The vCPU goes straight
 * back into the guest, and the main thread's event loop (koffi's poll on the
 * eventfd) runs the device. One eventfd per queue, matched on the queue index
 * the driver writes.
 */
import koffi from 'koffi';
import * as libc from './libc.js';
import { KVM_IOEVENTFD_FLAG_DATAMATCH } from './structs.js';
import type { VmFd } from './kvm.js';

/** The virtio-mmio QueueNotify register is 32 bits wide. */
const NOTIFY_WRITE_SIZE = 4;
/** An eventfd counter is read as one u64. */
const EVENTFD_COUNTER_SIZE = 8;

export class QueueNotifier {
  private readonly fd: number;
  private readonly poll: { close(): void };
  private readonly counter = new Uint8Array(EVENTFD_COUNTER_SIZE);
  private closed = false;

  constructor(vm: VmFd, address: number, queueIndex: number, onNotify: () => void) {
    this.fd = libc.check(libc.eventfd(0, libc.EFD_NONBLOCK | libc.EFD_CLOEXEC), 'eventfd');
    try {
      vm.ioeventfd(address, NOTIFY_WRITE_SIZE, this.fd, KVM_IOEVENTFD_FLAG_DATAMATCH, BigInt(queueIndex));
    } catch (error) {
      libc.close(this.fd);
      throw error;
    }
    this.poll = koffi.node.poll(this.fd, { readable: true }, () => {
      // Reading resets the counter; several guest notifications collapse into one pass.
      if (libc.read(this.fd, this.counter, EVENTFD_COUNTER_SIZE) === EVENTFD_COUNTER_SIZE) onNotify();
    });
  }

  /** Stops polling and closes the eventfd (KVM drops the binding with the VM). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poll.close();
    libc.close(this.fd);
  }
}
