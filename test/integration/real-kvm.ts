/**
 * Integration tests need a real KVM: in the KVM lab, or on a host with
 * hardware virtualization. Anywhere else they skip, and say why.
 */
import { detectHostKvm } from '../lab/host-kvm.js';

let cached: string | undefined | null = null;

/** `undefined` when a real KVM is here; otherwise the reason to skip. */
export function realKvmSkipReason(): string | undefined {
  if (cached !== null) return cached;
  if (process.env['BELLJAR_IN_LAB'] === '1') return (cached = undefined);
  const host = detectHostKvm();
  cached =
    host.mode === 'direct'
      ? undefined
      : `needs a real KVM (${host.reason}); run it through the KVM lab: npm run test:lab`;
  return cached;
}
