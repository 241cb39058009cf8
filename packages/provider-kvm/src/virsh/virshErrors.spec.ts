import { describe, expect, it } from 'vitest';
import { AuthFailedError, CapacityExceededError, ConflictError, NotFoundError, TimeoutError, UnreachableError, UnsupportedError } from '@novacron/core';
import { virshError, virshMessage } from './virshErrors.js';

const ctx = { provider: 'lab', host: 'hv1', vm: 'shop-web-0', operation: 'create' };

// stderr as libvirt 9 prints it under LC_ALL=C.
describe('virsh error rules', () => {
  it.each([
    ["error: failed to get domain 'shop-web-0'", NotFoundError, 'domain-not-found'],
    ["error: failed to get vol 'x.qcow2'\nerror: Storage volume not found: no storage vol with matching path 'x.qcow2'", NotFoundError, 'volume-not-found'],
    ["error: failed to get pool 'nope'\nerror: Storage pool not found: no storage pool with matching name 'nope'", NotFoundError, 'pool-not-found'],
    ["error: Failed to create vol x\nerror: operation failed: storage vol 'x' already exists", ConflictError, 'already-exists'],
    // libvirt 9's wording for vol-create-as (found by the leftover-volume testbed test).
    ["error: Failed to create vol nc-root.qcow2\nerror: storage volume 'nc-root.qcow2' exists already", ConflictError, 'already-exists'],
    ["error: Failed to start domain 'a'\nerror: internal error: qemu unexpectedly closed the monitor: cannot set up guest memory 'pc.ram': Cannot allocate memory", CapacityExceededError, 'out-of-memory'],
    ["error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/libvirt-sock': Permission denied", AuthFailedError, 'libvirt-permission'],
    ["error: failed to connect to the hypervisor\nerror: authentication unavailable: no polkit agent available to authenticate action 'org.libvirt.unix.manage'", AuthFailedError, 'libvirt-permission'],
    ["error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory", UnreachableError, 'libvirtd-down'],
    ['sh: 1: virsh: not found', UnsupportedError, 'virsh-missing'],
    ["error: Timed out during operation: cannot acquire state change lock (held by monitor=remoteDispatchDomainCreate)", TimeoutError, 'state-lock'],
    ["error: Failed to start domain 'a'\nerror: Requested operation is not valid: domain is already running", ConflictError, 'operation-invalid'],
    ["error: Failed to create vol\nerror: cannot allocate 1099511627776 bytes in file '/x': No space left on device", CapacityExceededError, 'out-of-space'],
  ] as const)('%s', (stderr, type, rule) => {
    const error = virshError(stderr, 'virsh start', ctx, 1);
    expect(error).toBeInstanceOf(type);
    expect(error.rule).toBe(rule);
    expect(error.context).toEqual(ctx);
    expect(error.message).toMatch(/^hv1: virsh start failed: /);
    expect(error.hint).toBeTruthy();
  });

  it('keeps unknown failures as provider errors with the message', () => {
    const error = virshError('error: something odd', 'virsh define', ctx, 1);
    expect(error.code).toBe('Provider');
    expect(error.message).toContain('something odd');
  });

  it('treats exit 127 as virsh missing', () => {
    expect(virshError('', 'virsh list', ctx, 127)).toBeInstanceOf(UnsupportedError);
  });

  it('joins error lines and drops the prefix', () => {
    expect(virshMessage('error: a\nerror: b\n')).toBe('a: b');
  });
});
