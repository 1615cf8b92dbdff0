/** The VMM process's exit codes: how the guest (or the VMM) ended. */
export const EXIT_CODE = {
  /** The guest powered off, or the host stopped the VM (SIGTERM/SIGINT). */
  poweroff: 0,
  /** The VMM failed (a KVM error, a device error, a guest KVM cannot run). */
  error: 1,
  /** Bad command line or configuration, unreadable or invalid input files. */
  usage: 2,
  /** The guest rebooted (i8042 reset or KVM reset event). */
  reboot: 3,
  /** The guest triple-faulted. */
  tripleFault: 4,
  /** The guest kernel panicked (reported through pvpanic). */
  panic: 5,
} as const;
