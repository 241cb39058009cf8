import { describe, expect, it } from 'vitest';
import { AuthFailedError, UnreachableError } from '@novacron/core';
import { virshError } from './virshErrors.js';

describe('virsh errors that name the cause for a non-root user', () => {
  it('reads "no system bus" as a permission problem, not as libvirtd down', () => {
    const e = virshError('error: failed to connect to the hypervisor\nerror: internal error: Unable to get system bus connection: Could not connect: No such file or directory\n', 'virsh list', { host: 'hv1' }, 1);
    expect(e).toBeInstanceOf(AuthFailedError);
    expect(e.rule).toBe('libvirt-polkit-unavailable');
    expect(e.hint).toMatch(/not root, so libvirt asks polkit/);
    const down = virshError("error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory\n", 'virsh list', { host: 'hv1' }, 1);
    expect(down).toBeInstanceOf(UnreachableError);
  });
});
