import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildIso9660, primaryName } from './iso9660.js';
import { buildSeedIso, seedFiles } from './seed.js';

/** A small independent ISO 9660 reader: descriptors, then the Joliet root's files. */
function readIso(iso: Buffer): { label: string; primaryLabel: string; files: Record<string, string>; primaryNames: string[] } {
  expect(iso.length % 2048).toBe(0);
  const pvd = iso.subarray(16 * 2048, 17 * 2048);
  const svd = iso.subarray(17 * 2048, 18 * 2048);
  expect(pvd.toString('ascii', 1, 6)).toBe('CD001');
  expect(pvd[0]).toBe(1);
  expect(svd[0]).toBe(2);
  expect(svd.toString('ascii', 88, 91)).toBe('%/E');
  expect(iso[18 * 2048]).toBe(255);
  expect(pvd.readUInt32LE(80) * 2048).toBe(iso.length);
  expect(pvd.readUInt32BE(84)).toBe(pvd.readUInt32LE(80));
  const ucs2 = (b: Buffer) => Buffer.from(b).swap16().toString('utf16le');
  const label = ucs2(svd.subarray(40, 72)).trimEnd();
  const walk = (vd: Buffer, decode: (b: Buffer) => string) => {
    const root = vd.subarray(156, 190);
    const extent = root.readUInt32LE(2);
    const dir = iso.subarray(extent * 2048, extent * 2048 + root.readUInt32LE(10));
    const out: [string, Buffer][] = [];
    for (let at = 0; at < dir.length && dir[at]! > 0; at += dir[at]!) {
      const r = dir.subarray(at, at + dir[at]!);
      const id = r.subarray(33, 33 + r[32]!);
      if (r[32] === 1 && (id[0] === 0 || id[0] === 1)) continue;
      const start = r.readUInt32LE(2) * 2048;
      out.push([decode(id), iso.subarray(start, start + r.readUInt32LE(10))]);
    }
    return out;
  };
  const files = Object.fromEntries(walk(svd, ucs2).map(([n, b]) => [n, b.toString('utf8')]));
  const primaryNames = walk(pvd, (b) => b.toString('ascii')).map(([n]) => n);
  return { label, primaryLabel: pvd.toString('ascii', 40, 72).trimEnd(), files, primaryNames };
}

const date = new Date('2026-02-03T04:05:06Z');

describe('NoCloud seed', () => {
  it('is an ISO 9660 volume labelled cidata with meta-data and user-data under their real names', () => {
    const iso = buildSeedIso({ vmName: 'shop-web-0', specHash: 'abc', date });
    const read = readIso(iso);
    expect(read.label).toBe('cidata');
    expect(read.primaryLabel).toBe('CIDATA');
    expect(read.primaryNames).toEqual(['META_DATA.;1', 'USER_DATA.;1']);
    expect(read.files['meta-data']).toMatch(/^instance-id: "nc-[0-9a-f]{20}"\nlocal-hostname: "shop-web-0"\n$/);
    expect(read.files['user-data']).toBe('#cloud-config\nhostname: "shop-web-0"\n');
    expect(iso.length).toBe(27 * 2048);
  });

  it('is deterministic for the same input and date', () => {
    const a = buildSeedIso({ vmName: 'a', specHash: 'h', date });
    expect(buildSeedIso({ vmName: 'a', specHash: 'h', date }).equals(a)).toBe(true);
  });

  it('takes its instance id from its content: new cloud-init data, new id; nothing else changes it', () => {
    const a = seedFiles({ vmName: 'a', specHash: 'h1', date, cloudInit: { userData: '#cloud-config\n', onChange: 'reboot' } });
    const sameData = seedFiles({ vmName: 'a', specHash: 'h2', date: new Date(0), cloudInit: { userData: '#cloud-config\n', onChange: 'ignore' } });
    const newData = seedFiles({ vmName: 'a', specHash: 'h1', date, cloudInit: { userData: '#cloud-config\npackages: [nginx]\n', onChange: 'reboot' } });
    const withKeys = seedFiles({ vmName: 'a', specHash: 'h1', date, cloudInit: { userData: '#cloud-config\n', sshAuthorizedKeys: ['ssh-ed25519 AAAA me'], onChange: 'reboot' } });
    expect(a.instanceId).toMatch(/^nc-[0-9a-f]{20}$/);
    expect(sameData.instanceId).toBe(a.instanceId);
    expect(new Set([a.instanceId, newData.instanceId, withKeys.instanceId]).size).toBe(3);
    expect(a.metaData).toContain(`instance-id: "${a.instanceId}"`);
    const hash = createHash('sha256').update('local-hostname: "a"\n').update('\0').update(a.userData).digest('hex');
    expect(a.instanceId).toBe(`nc-${hash.slice(0, 20)}`);
  });

  it('passes user data through and adds authorized keys as their own part', () => {
    expect(seedFiles({ vmName: 'a', specHash: 'h', date, cloudInit: { userData: '#!/bin/sh\necho hi\n', onChange: 'ignore' } }).userData).toBe('#!/bin/sh\necho hi\n');
    const both = seedFiles({ vmName: 'a', specHash: 'h', date, cloudInit: { userData: '#!/bin/sh\necho hi\n', sshAuthorizedKeys: ['ssh-ed25519 AAAA me'], onChange: 'ignore' } }).userData;
    expect(both).toContain('multipart/mixed');
    expect(both).toContain('  - "ssh-ed25519 AAAA me"');
    expect(both).toContain('text/x-shellscript');
  });

  it('keeps hostile values inside YAML strings', () => {
    const { userData } = seedFiles({ vmName: 'a', specHash: 'h', date, cloudInit: { sshAuthorizedKeys: ['k"\nruncmd: [reboot]'], onChange: 'ignore' } });
    expect(userData.split('\n').filter((l) => l.startsWith('runcmd'))).toEqual([]);
  });

  it('writes files larger than a sector and keeps names apart', () => {
    const big = Buffer.alloc(5000, 65);
    const read = readIso(buildIso9660({ volumeId: 'cidata', date, files: [{ name: 'user-data', data: big }, { name: 'network-config', data: Buffer.from('x') }] }));
    expect(read.files['user-data']).toBe(big.toString());
    expect(read.files['network-config']).toBe('x');
    expect(primaryName('network-config')).toBe('NETWORK_CONFIG.;1');
    expect(() => buildIso9660({ volumeId: 'x', date, files: [{ name: 'a-b', data: big }, { name: 'a_b', data: big }] })).toThrow(/two files/);
  });
});
