/**
 * Can this host's KVM run a real Linux guest? Only when the CPU exposes
 * hardware virtualization. A paravirtual /dev/kvm without it (as on our build
 * machines) runs simple real-mode code but crawls through a Linux boot and
 * then stops with a KVM emulation error.
 */
import { readFileSync } from 'node:fs';

export type HardwareVirtualization = 'vmx' | 'svm';

export function cpuHardwareVirtualization(
  cpuinfo: string = readFileSync('/proc/cpuinfo', 'utf8'),
): HardwareVirtualization | null {
  const flags = /^flags\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.split(/\s+/) ?? [];
  if (flags.includes('vmx')) return 'vmx';
  if (flags.includes('svm')) return 'svm';
  return null;
}
