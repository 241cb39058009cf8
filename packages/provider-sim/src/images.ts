import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidInputError, type ImageArtifact } from '@novacron/core';
import type { SimVm } from './world.js';

/**
 * Disk export and import between simulated datacenters (or between the sim and a real
 * provider in tests): the exported "disk" is a small raw file that names the VM and its
 * image, so an import can be checked end to end by content and checksum.
 */
export function exportDisk(vm: SimVm, dir: string): ImageArtifact {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${vm.name}.raw`);
  const body = Buffer.from(JSON.stringify({ format: 'novacron-sim-disk/1', vm: vm.name, image: vm.image, diskGiB: vm.resources.diskGiB }));
  writeFileSync(path, body);
  return { path, format: 'raw', sizeBytes: body.length, sha256: sha256(body) };
}

export function checkArtifact(artifact: ImageArtifact): void {
  const body = readFileSync(artifact.path);
  if (sha256(body) !== artifact.sha256) {
    throw new InvalidInputError(`image ${artifact.path} does not match its checksum`, { hint: 'export it again' });
  }
}

function sha256(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}
