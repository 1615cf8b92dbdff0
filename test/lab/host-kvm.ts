/**
 * Where can integration tests get a real KVM? On a host whose CPU exposes
 * hardware virtualization (vmx/svm) and whose /dev/kvm runs a probe guest,
 * they run directly. Otherwise (these machines: a paravirtual KVM that runs
 * real-mode code but not an unmodified Linux kernel) they run in the KVM lab.
 */
import { cpuHardwareVirtualization } from '../../vmm/kvm/host.js';
import { runProbeGuest } from '../../vmm/kvm/probe.js';

export type KvmMode = 'direct' | 'lab';

export interface HostKvm {
  readonly mode: KvmMode;
  readonly reason: string;
}

export function detectHostKvm(): HostKvm {
  const forced = process.env['BELLJAR_KVM_MODE'];
  if (forced === 'direct' || forced === 'lab') return { mode: forced, reason: `forced by BELLJAR_KVM_MODE=${forced}` };
  const feature = cpuHardwareVirtualization();
  if (!feature) {
    return { mode: 'lab', reason: 'the CPU exposes no hardware virtualization (no vmx/svm in /proc/cpuinfo)' };
  }
  try {
    const probe = runProbeGuest();
    if (probe.halted && probe.output === 'OK') {
      return { mode: 'direct', reason: `${feature} present and /dev/kvm ran the probe guest` };
    }
    return {
      mode: 'lab',
      reason: `/dev/kvm ran the probe guest but it misbehaved (output ${JSON.stringify(probe.output)})`,
    };
  } catch (error) {
    return { mode: 'lab', reason: `${feature} present but /dev/kvm is unusable: ${(error as Error).message}` };
  }
}
