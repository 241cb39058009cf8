import { createHash } from 'node:crypto';
import { InvalidInputError, type KvmProviderConfig, type OperationContext } from '@novacron/core';
import { assertName } from './names.js';
import type { Virsh } from './virsh/Virsh.js';
import { child, parseXml, textOf } from './xml/parseXml.js';

export type ImageConfig = KvmProviderConfig['images'][string];

export interface BaseVolume {
  readonly volume: string;
  readonly format: 'qcow2' | 'raw';
}

/** The pool volume an image given by URL is cached in on every host: named after the image, its URL and checksum. */
export function cachedImageVolume(imageName: string, image: Pick<ImageConfig, 'url' | 'checksum' | 'format'>): string {
  const tag = createHash('sha256').update(`${image.url ?? ''}\n${image.checksum ?? ''}`).digest('hex').slice(0, 12);
  return `novacron-image-${imageName.replace(/[^A-Za-z0-9._+-]/g, '_')}-${tag}.${image.format}`;
}

/** The configured image whose base volume is this file (an overlay's backing file), if any. */
export function imageOfBackingFile(images: Readonly<Record<string, ImageConfig>>, backingFile: string): string | undefined {
  const base = backingFile.slice(backingFile.lastIndexOf('/') + 1);
  for (const [name, image] of Object.entries(images)) {
    if (image.volume ? image.volume === base : image.url ? cachedImageVolume(name, image) === base : false) return name;
  }
  return undefined;
}

/**
 * The volume new disks are backed by. An image with `volume` names one already in the pool
 * (vol-create-as reports it missing, with a hint). An image with only `url` is fetched by
 * the host itself, once, into the pool under a name derived from the URL and checksum; the
 * download lands in a temporary file that is renamed only after its checksum matched, so a
 * broken download never becomes a base image.
 */
export async function ensureImageVolume(virsh: Virsh, pool: string, imageName: string, image: ImageConfig, ctx: OperationContext = {}): Promise<BaseVolume> {
  if (image.volume) return { volume: image.volume, format: image.format };
  const context = virsh.context({ operation: 'create' });
  if (!image.url) {
    throw new InvalidInputError(`image "${imageName}" has neither a volume nor a url`, { context, hint: 'give the image a `volume` in the pool, or a `url` (with a sha256 checksum) the hosts can fetch' });
  }
  if (!/^https?:\/\//.test(image.url)) throw new InvalidInputError(`image "${imageName}": only http(s) URLs can be fetched`, { context, hint: 'serve the image over http(s), or put it in the pool and name its volume' });
  const volume = assertName('object', cachedImageVolume(imageName, image), 'image volume', context);
  const exists = await virsh.tryRun(['vol-info', volume, '--pool', pool], { ...(ctx.signal ? { signal: ctx.signal } : {}), operation: 'create' });
  if (!exists.error) return { volume, format: image.format };
  if (exists.error.code !== 'NotFound') throw exists.error;

  const poolXml = await virsh.run(['pool-dumpxml', pool], { ...(ctx.signal ? { signal: ctx.signal } : {}), operation: 'create' });
  const poolNode = parseXml(poolXml).node;
  const dir = textOf(child(poolNode, 'target'), 'path');
  if (poolNode.attrs['type'] !== 'dir' || !dir) {
    throw new InvalidInputError(`image "${imageName}": pool ${pool} is not a directory pool, so the host cannot fetch the image into it`, {
      context,
      hint: 'upload the image into the pool yourself and name it as the image\'s `volume`',
    });
  }
  assertName('path', dir, 'pool path', context);
  const q = (s: string) => virsh.quote(s);
  const sha = image.checksum?.slice('sha256:'.length);
  const script = [
    'set -e',
    `d=${q(dir)}; f=${q(volume)}; t="$d/.$f.part.$$"`,
    `trap 'rm -f "$t"' EXIT`,
    `if command -v curl >/dev/null 2>&1; then curl -fsSL --retry 3 -o "$t" ${q(image.url)}; ` +
      `elif command -v wget >/dev/null 2>&1; then wget -q -O "$t" ${q(image.url)}; ` +
      `else echo 'error: neither curl nor wget is installed on the host' >&2; exit 127; fi`,
    ...(sha ? [`echo ${q(`${sha}  `)}"$t" | sha256sum -c --status - || { echo 'error: checksum mismatch for the downloaded image' >&2; exit 1; }`] : []),
    'mv -f "$t" "$d/$f"; trap - EXIT',
    `${virsh.commandLine(['pool-refresh', pool])} </dev/null >/dev/null`,
  ].join('\n');
  ctx.onProgress?.({ operation: 'create', phase: 'image-download', message: `fetching ${image.url}` });
  const result = await virsh.script(script, { ...(ctx.signal ? { signal: ctx.signal } : {}), timeoutMs: 3_600_000 });
  if (result.code !== 0) {
    throw new InvalidInputError(`${virsh.host}: fetching image "${imageName}" from ${image.url} failed: ${result.stderr.trim().slice(0, 400) || `exit ${result.code}`}`, {
      context,
      hint: 'check that the host can reach the URL and that the checksum is right',
    });
  }
  return { volume, format: image.format };
}
