import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { pipeline } from 'node:stream/promises';
import {
  CreateImageCommand,
  DeleteSnapshotCommand,
  DeregisterImageCommand,
  DescribeExportImageTasksCommand,
  DescribeImagesCommand,
  DescribeImportSnapshotTasksCommand,
  ExportImageCommand,
  ImportSnapshotCommand,
  RegisterImageCommand,
  type EC2Client,
  type Image,
} from '@aws-sdk/client-ec2';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import {
  InvalidInputError,
  NovaCronError,
  throwIfAborted,
  UnsupportedError,
  type AwsProviderConfig,
  type Clock,
  type ErrorContext,
  type ImageArtifact,
  type OperationContext,
} from '@novacron/core';
import { awsErrorCode, mapAwsError } from './errors.js';
import { TAG } from './tags.js';
import { derivedToken } from './tokens.js';

/** S3 multipart: parts of at least 5 MiB, at most 10,000 of them. */
const MIN_PART = 64 * 1024 ** 2;
const MAX_PARTS = 10_000;

export interface AwsImagesDeps {
  readonly provider: string;
  readonly config: AwsProviderConfig;
  readonly clock: Clock;
  ec2(): EC2Client;
  s3(): S3Client;
  poll(where: ErrorContext, ctx: OperationContext, check: () => Promise<boolean>): Promise<void>;
}

/**
 * The cloud half of moves between KVM and EC2, through VM Import/Export:
 * import = upload the disk to S3, ImportSnapshot, RegisterImage (an AMI tagged with the
 * image name and the artifact's sha256, so a second import of the same disk is a no-op);
 * export = CreateImage, ExportImage to S3 as raw, download with a checksum.
 */
export class AwsImages {
  readonly #deps: AwsImagesDeps;

  constructor(deps: AwsImagesDeps) {
    this.#deps = deps;
  }

  async importArtifact(artifact: ImageArtifact, imageName: string, where: ErrorContext, ctx: OperationContext): Promise<string> {
    const format = artifact.format === 'raw' ? 'RAW' : artifact.format === 'vmdk' ? 'VMDK' : undefined;
    if (!format) {
      throw new UnsupportedError(`EC2 imports raw and VMDK disks, not ${artifact.format}`, {
        context: where,
        hint: `convert it first: qemu-img convert -O raw ${artifact.path} disk.raw`,
      });
    }
    const bucket = this.#bucket(where);
    const size = (await stat(artifact.path).catch(() => undefined))?.size;
    if (size === undefined || size !== artifact.sizeBytes) {
      throw new InvalidInputError(`image file ${artifact.path} ${size === undefined ? 'does not exist' : `has ${size} bytes, not ${artifact.sizeBytes}`}`, { context: where });
    }
    const existing = await this.#ownImages(imageName, artifact.sha256, where, ctx.signal);
    if (existing[0]?.ImageId) return existing[0].ImageId;

    const key = `${this.#deps.config.imagePrefix}${imageName}/${artifact.sha256}.${artifact.format}`;
    await this.#upload(artifact.path, size, bucket, key, where, ctx);

    const task = await this.#ec2(where, (ec2) =>
      ec2.send(
        new ImportSnapshotCommand({
          ClientToken: derivedToken('import-snapshot', this.#deps.config.region, imageName, artifact.sha256),
          Description: `NovaCron image ${imageName} (${artifact.sha256.slice(0, 12)})`,
          DiskContainer: { Format: format, UserBucket: { S3Bucket: bucket, S3Key: key } },
          RoleName: this.#deps.config.importRole,
          TagSpecifications: [{ ResourceType: 'import-snapshot-task', Tags: this.#tags(imageName, artifact.sha256) }],
        }),
        { abortSignal: ctx.signal },
      ),
    );
    const taskId = task.ImportTaskId;
    if (!taskId) throw new NovaCronError('Provider', 'server', 'EC2 ImportSnapshot returned no task id', { context: where });
    let snapshotId: string | undefined;
    await this.#deps.poll(where, ctx, async () => {
      const out = await this.#ec2(where, (ec2) => ec2.send(new DescribeImportSnapshotTasksCommand({ ImportTaskIds: [taskId] }), { abortSignal: ctx.signal }));
      const detail = out.ImportSnapshotTasks?.[0]?.SnapshotTaskDetail;
      const progress = Number(detail?.Progress);
      ctx.onProgress?.({ operation: 'importImage', phase: `import ${detail?.Status ?? 'pending'}`, ...(Number.isFinite(progress) ? { fraction: progress / 100 } : {}), ...(detail?.StatusMessage ? { message: detail.StatusMessage } : {}) });
      if (detail?.Status === 'completed') {
        snapshotId = detail.SnapshotId;
        return true;
      }
      if (detail?.Status === 'deleted' || detail?.Status === 'deleting') {
        throw new NovaCronError('Provider', 'client', `EC2 could not import ${imageName}: ${detail.StatusMessage ?? 'the import task was deleted'}`, {
          context: where,
          hint: 'VM Import needs a bootable disk with a supported OS and the "vmimport" role (docs/aws.md)',
        });
      }
      return false;
    });
    if (!snapshotId) throw new NovaCronError('Provider', 'server', `import task ${taskId} completed without a snapshot`, { context: where });

    const name = `${imageName}-${artifact.sha256.slice(0, 12)}`;
    try {
      const out = await this.#deps.ec2().send(
        new RegisterImageCommand({
          Name: name,
          Description: `NovaCron image ${imageName}`,
          Architecture: 'x86_64',
          VirtualizationType: 'hvm',
          EnaSupport: true,
          RootDeviceName: '/dev/xvda',
          // KVM guests boot with SeaBIOS unless they were built for UEFI.
          BootMode: 'legacy-bios',
          BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { SnapshotId: snapshotId, DeleteOnTermination: true, VolumeType: 'gp3' } }],
          TagSpecifications: [{ ResourceType: 'image', Tags: this.#tags(imageName, artifact.sha256) }],
        }),
        { abortSignal: ctx.signal },
      );
      if (!out.ImageId) throw new NovaCronError('Provider', 'server', 'EC2 RegisterImage returned no image id', { context: where });
      return out.ImageId;
    } catch (error) {
      // A retry after RegisterImage succeeded but its answer was lost: the name is taken by our AMI.
      if (awsErrorCode(error) === 'InvalidAMIName.Duplicate') {
        const again = await this.#ownImages(imageName, artifact.sha256, where, ctx.signal);
        if (again[0]?.ImageId) return again[0].ImageId;
      }
      throw mapAwsError(error, where);
    }
  }

  async exportInstance(instanceId: string, vm: string, where: ErrorContext, ctx: OperationContext): Promise<ImageArtifact> {
    const bucket = this.#bucket(where);
    const stamp = new Date(this.#deps.clock.now()).toISOString().replace(/[-:.]/g, '').toLowerCase();
    // A reboot gives a consistent file system; the move retires the source VM anyway.
    const created = await this.#ec2(where, (ec2) =>
      ec2.send(
        new CreateImageCommand({
          InstanceId: instanceId,
          Name: `novacron-export-${vm}-${stamp}`,
          NoReboot: false,
          TagSpecifications: [{ ResourceType: 'image', Tags: [{ Key: TAG.vm, Value: vm }, { Key: 'novacron:export', Value: 'true' }] }],
        }),
        { abortSignal: ctx.signal },
      ),
    );
    const imageId = created.ImageId;
    if (!imageId) throw new NovaCronError('Provider', 'server', 'EC2 CreateImage returned no image id', { context: where });
    let image: Image | undefined;
    try {
      await this.#deps.poll(where, ctx, async () => {
        const out = await this.#ec2(where, (ec2) => ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] }), { abortSignal: ctx.signal }));
        image = out.Images?.[0];
        ctx.onProgress?.({ operation: 'exportImage', phase: `image ${image?.State ?? 'pending'}` });
        if (image?.State === 'failed' || image?.State === 'error') {
          throw new NovaCronError('Provider', 'server', `EC2 could not image VM "${vm}": ${image.StateReason?.Message ?? image.State}`, { context: where });
        }
        return image?.State === 'available';
      });
      const prefix = `${this.#deps.config.imagePrefix}exports/`;
      const task = await this.#ec2(where, (ec2) =>
        ec2.send(
          new ExportImageCommand({
            ImageId: imageId,
            DiskImageFormat: 'RAW',
            S3ExportLocation: { S3Bucket: bucket, S3Prefix: prefix },
            RoleName: this.#deps.config.importRole,
            ClientToken: derivedToken('export-image', imageId),
          }),
          { abortSignal: ctx.signal },
        ),
      );
      const taskId = task.ExportImageTaskId;
      if (!taskId) throw new NovaCronError('Provider', 'server', 'EC2 ExportImage returned no task id', { context: where });
      await this.#deps.poll(where, ctx, async () => {
        const out = await this.#ec2(where, (ec2) => ec2.send(new DescribeExportImageTasksCommand({ ExportImageTaskIds: [taskId] }), { abortSignal: ctx.signal }));
        const t = out.ExportImageTasks?.[0];
        const progress = Number(t?.Progress);
        ctx.onProgress?.({ operation: 'exportImage', phase: `export ${t?.Status ?? 'active'}`, ...(Number.isFinite(progress) ? { fraction: progress / 100 } : {}) });
        if (t?.Status === 'completed') return true;
        if (t?.Status === 'deleted' || t?.Status === 'deleting') {
          throw new NovaCronError('Provider', 'client', `EC2 could not export VM "${vm}": ${t.StatusMessage ?? 'the export task was deleted'}`, {
            context: where,
            hint: 'EC2 exports only instances whose AMI allows it (not Marketplace or Windows license-included images); see docs/aws.md',
          });
        }
        return false;
      });
      const key = `${prefix}${taskId}.raw`;
      const dir = this.#deps.config.imageDir ?? join(tmpdir(), 'novacron-images');
      await mkdir(dir, { recursive: true });
      const path = join(dir, `${vm}-${taskId}.raw`);
      const { sizeBytes, sha256 } = await this.#download(bucket, key, path, where, ctx);
      await this.#s3(where, (s3) => s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }))).catch(() => undefined);
      return { path, format: 'raw', sizeBytes, sha256 };
    } finally {
      await this.#discardImage(imageId, image, where);
    }
  }

  // ---- internals ---------------------------------------------------------------------------

  #bucket(where: ErrorContext): string {
    const bucket = this.#deps.config.imageBucket;
    if (!bucket) {
      throw new InvalidInputError(`provider "${this.#deps.provider}" has no imageBucket for image imports and exports`, {
        context: { ...where, path: `providers.${this.#deps.provider}.imageBucket` },
        hint: 'name an S3 bucket in the provider\'s region that the vmimport role can read and write (docs/aws.md)',
      });
    }
    return bucket;
  }

  #tags(imageName: string, sha256: string) {
    return [
      { Key: TAG.name, Value: imageName },
      { Key: TAG.image, Value: imageName },
      { Key: TAG.sha256, Value: sha256 },
    ];
  }

  async #ownImages(imageName: string, sha256: string, where: ErrorContext, signal: AbortSignal | undefined): Promise<Image[]> {
    const out = await this.#ec2(where, (ec2) =>
      ec2.send(
        new DescribeImagesCommand({
          Owners: ['self'],
          Filters: [
            { Name: `tag:${TAG.image}`, Values: [imageName] },
            { Name: `tag:${TAG.sha256}`, Values: [sha256] },
            { Name: 'state', Values: ['available', 'pending'] },
          ],
        }),
        { abortSignal: signal },
      ),
    );
    return out.Images ?? [];
  }

  /** Multipart upload, part by part from the file (memory stays at one part). Skipped when the object is there already. */
  async #upload(path: string, size: number, bucket: string, key: string, where: ErrorContext, ctx: OperationContext): Promise<void> {
    const s3where = { ...where, operation: `${where.operation} (upload)` };
    try {
      const head = await this.#deps.s3().send(new HeadObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: ctx.signal });
      if (head.ContentLength === size) return;
    } catch (error) {
      const code = awsErrorCode(error);
      if (code !== 'NotFound' && code !== 'NoSuchKey') throw mapAwsError(error, s3where, 'S3');
    }
    const partSize = Math.max(MIN_PART, Math.ceil(size / MAX_PARTS));
    const started = await this.#s3(s3where, (s3) =>
      s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: 'application/octet-stream' }), { abortSignal: ctx.signal }),
    );
    const uploadId = started.UploadId!;
    const parts: { ETag: string; PartNumber: number }[] = [];
    const file = await open(path, 'r');
    try {
      for (let offset = 0, part = 1; offset < size || part === 1; offset += partSize, part++) {
        throwIfAborted(ctx.signal, where);
        const length = Math.min(partSize, size - offset);
        const body = Buffer.alloc(length);
        await file.read(body, 0, length, offset);
        const out = await this.#s3(s3where, (s3) =>
          s3.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber: part, Body: body, ContentLength: length }), { abortSignal: ctx.signal }),
        );
        parts.push({ ETag: out.ETag ?? '', PartNumber: part });
        ctx.onProgress?.({ operation: 'importImage', phase: 'upload', fraction: size === 0 ? 1 : Math.min(1, (offset + length) / size) });
        if (length === 0) break;
      }
      await this.#s3(s3where, (s3) =>
        s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } }), { abortSignal: ctx.signal }),
      );
    } catch (error) {
      // Parts of an unfinished upload are billed until aborted.
      await this.#deps.s3().send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId })).catch(() => undefined);
      throw error;
    } finally {
      await file.close();
    }
  }

  async #download(bucket: string, key: string, path: string, where: ErrorContext, ctx: OperationContext): Promise<{ sizeBytes: number; sha256: string }> {
    const out = await this.#s3({ ...where, operation: `${where.operation} (download)` }, (s3) => s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: ctx.signal }));
    const total = out.ContentLength ?? 0;
    const hash = createHash('sha256');
    let sizeBytes = 0;
    const count = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        sizeBytes += chunk.length;
        if (total > 0) ctx.onProgress?.({ operation: 'exportImage', phase: 'download', fraction: sizeBytes / total });
        done(null, chunk);
      },
    });
    try {
      await pipeline(toReadable(out.Body), count, createWriteStream(path), ctx.signal ? { signal: ctx.signal } : {});
    } catch (error) {
      await rm(path, { force: true });
      throw mapAwsError(error, where, 'S3');
    }
    return { sizeBytes, sha256: hash.digest('hex') };
  }

  /** The AMI and snapshots made only to export are removed again (best effort: they are tagged for cleanup by hand). */
  async #discardImage(imageId: string, image: Image | undefined, where: ErrorContext): Promise<void> {
    try {
      await this.#deps.ec2().send(new DeregisterImageCommand({ ImageId: imageId }));
      for (const m of image?.BlockDeviceMappings ?? []) {
        if (m.Ebs?.SnapshotId) await this.#deps.ec2().send(new DeleteSnapshotCommand({ SnapshotId: m.Ebs.SnapshotId }));
      }
    } catch (error) {
      void mapAwsError(error, where);
    }
  }

  async #ec2<T>(where: ErrorContext, fn: (ec2: EC2Client) => Promise<T>): Promise<T> {
    try {
      return await fn(this.#deps.ec2());
    } catch (error) {
      throw mapAwsError(error, where);
    }
  }

  async #s3<T>(where: ErrorContext, fn: (s3: S3Client) => Promise<T>): Promise<T> {
    try {
      return await fn(this.#deps.s3());
    } catch (error) {
      throw mapAwsError(error, where, 'S3');
    }
  }
}

/** The SDK's body is a Node stream in Node; other runtimes hand out web streams. */
function toReadable(body: unknown): Readable {
  if (body instanceof Readable) return body;
  if (body && typeof (body as { transformToWebStream?: unknown }).transformToWebStream === 'function') {
    return Readable.fromWeb((body as { transformToWebStream(): WebReadableStream }).transformToWebStream());
  }
  throw new NovaCronError('Provider', 'server', 'S3 returned no readable body');
}

/** For tests and callers that want to check an artifact: the sha256 of a file. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}
