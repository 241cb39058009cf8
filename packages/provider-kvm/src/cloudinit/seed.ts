import { createHash } from 'node:crypto';
import type { CloudInit } from '@novacron/core';
import { buildIso9660 } from './iso9660.js';

/**
 * The cloud-init NoCloud seed of a VM: an ISO 9660 volume labelled `cidata` holding
 * `meta-data` (instance id and hostname) and `user-data` (the spec's, or a cloud-config
 * with the hostname and authorized keys). The instance id is a hash of the seed's content
 * (hostname and user data): new cloud-init data gives a new instance id, so cloud-init runs
 * its per-instance modules again at the next boot, and nothing else (a resize, a rebuild
 * from the same data) does.
 */
export interface SeedInput {
  readonly vmName: string;
  /** Not part of the seed: the instance id follows the content, not the spec. */
  readonly specHash?: string;
  readonly cloudInit?: CloudInit;
  readonly date: Date;
}

export function seedFiles(input: SeedInput): { metaData: string; userData: string; instanceId: string } {
  const userData = renderUserData(input);
  const hostname = `local-hostname: ${yamlString(input.vmName)}\n`;
  const instanceId = seedInstanceId(hostname, userData);
  return { metaData: `instance-id: ${yamlString(instanceId)}\n${hostname}`, userData, instanceId };
}

/** `nc-` and the first 20 hex digits of SHA-256 over the rest of the seed. */
export function seedInstanceId(metaDataWithoutId: string, userData: string): string {
  return `nc-${createHash('sha256').update(metaDataWithoutId).update('\0').update(userData).digest('hex').slice(0, 20)}`;
}

function renderUserData(input: SeedInput): string {
  const given = input.cloudInit?.userData;
  const keys = input.cloudInit?.sshAuthorizedKeys ?? [];
  let userData: string;
  if (given !== undefined && keys.length === 0) {
    userData = given;
  } else if (given !== undefined) {
    // Both given: cloud-init merges the parts of a MIME multipart document; the keys go
    // in their own cloud-config part so the user's data is passed through untouched.
    // From the content too, so the seed (and its instance id) depends on nothing else.
    const boundary = `novacron-${createHash('sha256').update(given).update('\0').update(keys.join('\n')).digest('hex').slice(0, 16)}`;
    userData = [
      'Content-Type: multipart/mixed; boundary="' + boundary + '"',
      'MIME-Version: 1.0',
      '',
      `--${boundary}`,
      'Content-Type: text/cloud-config; charset="utf-8"',
      '',
      cloudConfig(input.vmName, keys),
      `--${boundary}`,
      `Content-Type: ${given.startsWith('#!') ? 'text/x-shellscript' : 'text/cloud-config'}; charset="utf-8"`,
      '',
      given,
      `--${boundary}--`,
      '',
    ].join('\n');
  } else {
    userData = cloudConfig(input.vmName, keys);
  }
  return userData;
}

export function buildSeedIso(input: SeedInput): Buffer {
  const { metaData, userData } = seedFiles(input);
  return buildIso9660({
    volumeId: 'cidata',
    date: input.date,
    files: [
      { name: 'meta-data', data: Buffer.from(metaData, 'utf8') },
      { name: 'user-data', data: Buffer.from(userData, 'utf8') },
    ],
  });
}

function cloudConfig(hostname: string, keys: readonly string[]): string {
  const lines = ['#cloud-config', `hostname: ${yamlString(hostname)}`];
  if (keys.length > 0) lines.push('ssh_authorized_keys:', ...keys.map((k) => `  - ${yamlString(k)}`));
  return `${lines.join('\n')}\n`;
}

/** A YAML double-quoted scalar (JSON strings are valid YAML), so no value can open a new key. */
function yamlString(value: string): string {
  return JSON.stringify(value);
}
