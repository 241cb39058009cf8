import type { protos } from '@google-cloud/compute';
import type { Resources } from '@novacron/core';
import type { GceCatalog } from './catalog/types.js';
import { LABEL, lastSegment, META } from './labels.js';

type Instance = protos.google.cloud.compute.v1.IInstance;
type MetadataItem = protos.google.cloud.compute.v1.IItems;

/** An instance no fleet owns: no fleet label, and not one NovaCron restored from a snapshot. */
export function isUnowned(instance: Instance): boolean {
  const labels = instance.labels ?? {};
  return !(LABEL.fleet in labels) && !(LABEL.restoredFrom in labels) && !(LABEL.scratch in labels);
}

/**
 * A machine type's size: the catalog's, else a custom type's own (`custom-4-8192`,
 * `n2-custom-4-8192`, `-ext` for extended memory). `undefined` when neither tells.
 */
export function machineTypeSize(type: string, catalog: GceCatalog): Omit<Resources, 'diskGiB'> | undefined {
  const known = catalog.types.find((t) => t.name === type);
  if (known) return { cpu: known.cpu, memoryMiB: known.memoryMiB, gpu: known.gpu ?? 0 };
  const custom = /^(?:[a-z0-9]+-)?custom-(\d+)-(\d+)(?:-ext)?$/.exec(type);
  return custom ? { cpu: Number(custom[1]), memoryMiB: Number(custom[2]), gpu: 0 } : undefined;
}

/** An image reference without the API's URL prefix: `projects/p/global/images/x`. */
export function imagePath(ref: string): string {
  return ref.replace(/^https:\/\/(www|compute)\.googleapis\.com\/compute\/(v1|beta)\//, '');
}

/** The fleet image names an image is in the provider's `images` map: the same image, or its family. */
export function fleetImagesOf(sourceImage: string, family: string | undefined, images: Readonly<Record<string, string>>): string[] {
  const path = imagePath(sourceImage);
  const project = /^projects\/([^/]+)\//.exec(path)?.[1];
  const familyPath = family && project ? `projects/${project}/global/images/family/${family}` : undefined;
  return Object.entries(images)
    .filter(([, ref]) => imagePath(ref) === path || (familyPath !== undefined && imagePath(ref) === familyPath))
    .map(([name]) => name);
}

/**
 * The instance's metadata with NovaCron's record of an adopted VM (the fleet's image name,
 * its size, the fleet's labels exactly): every other key (user-data, startup-script,
 * ssh-keys, anyone's) stays as it is.
 */
export function adoptedMetadata(current: readonly MetadataItem[] | null | undefined, image: string, resources: string, labels: string): MetadataItem[] {
  const own = new Set<string>([META.image, META.resources, META.labels]);
  return [...(current ?? []).filter((i) => !own.has(i.key ?? '')), { key: META.image, value: image }, { key: META.resources, value: resources }, { key: META.labels, value: labels }];
}

/** The boot disk's name and its size in GiB (0 when the instance has none). */
export function bootDisk(instance: Instance): { name: string | undefined; sizeGiB: number } {
  const boot = (instance.disks ?? []).find((d) => d.boot);
  return { name: boot?.source ? lastSegment(boot.source) : undefined, sizeGiB: Number(boot?.diskSizeGb ?? 0) };
}
