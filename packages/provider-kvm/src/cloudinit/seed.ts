import type { CloudInit } from '@novacron/core';
import { buildIso9660 } from './iso9660.js';

/**
 * The cloud-init NoCloud seed of a VM: an ISO 9660 volume labelled `cidata` holding
 * `meta-data` (instance id and hostname) and `user-data` (the spec's, or a cloud-config
 * with the hostname and authorized keys). The instance id changes with the spec hash, so
 * cloud-init re-runs its per-instance modules when the VM is recreated from a new spec.
 */
export interface SeedInput {
  readonly vmName: string;
  readonly specHash: string;
  readonly cloudInit?: CloudInit;
  readonly date: Date;
}

export function seedFiles(input: SeedInput): { metaData: string; userData: string } {
  const metaData = `instance-id: ${yamlString(`${input.vmName}-${input.specHash}`)}\nlocal-hostname: ${yamlString(input.vmName)}\n`;
  const given = input.cloudInit?.userData;
  const keys = input.cloudInit?.sshAuthorizedKeys ?? [];
  let userData: string;
  if (given !== undefined && keys.length === 0) {
    userData = given;
  } else if (given !== undefined) {
    // Both given: cloud-init merges the parts of a MIME multipart document; the keys go
    // in their own cloud-config part so the user's data is passed through untouched.
    const boundary = `novacron-${input.specHash}`;
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
  return { metaData, userData };
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
