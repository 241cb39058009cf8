import { readFileSync, existsSync } from 'node:fs';
import {
  AuthFailedError,
  InvalidInputError,
  NotFoundError,
  NovaCronError,
  UnsupportedError,
  type OperationContext,
} from '@novacron/core';
import type { KvmHost, SshEndpoint } from '../config.js';
import { cachedImageVolume, type BaseVolume, type ImageConfig } from '../images.js';
import { lockDirScript, takeLockScript } from '../locks/hostLock.js';
import type { KeyedQueue } from '../locks/KeyedQueue.js';
import { assertName } from '../names.js';
import { entryMatches, knownHostName, parseKnownHosts } from '../ssh/knownHosts.js';
import type { Virsh } from '../virsh/Virsh.js';
import { child, parseXml, textOf } from '../xml/parseXml.js';

export interface ImageCacheOptions {
  readonly hosts: ReadonlyMap<string, KvmHost>;
  readonly virshFor: (host: string) => Virsh;
  readonly queue: KeyedQueue;
  /** Disk-heavy work at once per storage pool. */
  readonly perPool: number;
  readonly lockDir?: string;
  readonly log?: (message: string) => void;
}

/** How often each way of getting an image onto a host was taken, in this process. */
export interface ImageCacheStats {
  readonly hits: number;
  readonly fetches: number;
  readonly pushes: number;
}

/**
 * Base images on the hosts, each fetched once per host into its pool and checked by its
 * checksum. A host that lacks an image gets it from another host of the provider that has
 * it, host to host over SSH (the source host runs `ssh` to the target and streams the file:
 * the bytes never pass through this machine), and only when no host has it from its URL,
 * fetched by the host itself. Within a process one host leads per image (it fetches, the
 * others wait and copy from it); across processes a lock on the target host makes the
 * second copy find the first one's result.
 */
export class ImageCache {
  readonly #options: ImageCacheOptions;
  readonly #inflight = new Map<string, Promise<BaseVolume>>();
  /** Per volume: the host that has (or is getting) it, first come. */
  readonly #leaders = new Map<string, Promise<string>>();
  readonly #stats = { hits: 0, fetches: 0, pushes: 0 };
  /** Host|pool|volume seen in place by this process: not asked again (a volume removed by hand later fails the create's vol-create-as, as before). */
  readonly #present = new Set<string>();

  constructor(options: ImageCacheOptions) {
    this.#options = options;
  }

  get stats(): ImageCacheStats {
    return { ...this.#stats };
  }

  /** The image's base volume in `host`'s pool, got there if it is not yet. */
  ensure(host: KvmHost, imageName: string, image: ImageConfig, ctx: OperationContext = {}): Promise<BaseVolume> {
    const volume = this.volumeOf(imageName, image, host);
    const key = `${host.name}|${host.pool}|${volume}`;
    if (this.#present.has(key)) {
      this.#stats.hits++;
      return Promise.resolve({ volume, format: image.format });
    }
    let pending = this.#inflight.get(key);
    if (!pending) {
      pending = this.#ensure(host, imageName, image, volume, ctx)
        .then((base) => {
          this.#present.add(key);
          return base;
        })
        .finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    return pending;
  }

  volumeOf(imageName: string, image: ImageConfig, host: KvmHost): string {
    const context = { host: host.name, operation: 'create' };
    if (image.volume) return image.volume;
    if (!image.url) throw new InvalidInputError(`image "${imageName}" has neither a volume nor a url`, { context, hint: 'give the image a `volume` in the pool, or a `url` (with a sha256 checksum) the hosts can fetch' });
    return assertName('object', cachedImageVolume(imageName, image), 'image volume', context);
  }

  async #ensure(host: KvmHost, imageName: string, image: ImageConfig, volume: string, ctx: OperationContext): Promise<BaseVolume> {
    const base: BaseVolume = { volume, format: image.format };
    if (await this.#has(host, volume, ctx)) {
      this.#stats.hits++;
      return base;
    }
    const lead = this.#leaders.get(volume);
    if (!lead) {
      // This host leads: it finds the image on another host or fetches it; the others wait for it.
      const leading = this.#obtain(host, imageName, image, volume, ctx).then(() => host.name);
      this.#leaders.set(volume, leading);
      leading.catch(() => this.#leaders.get(volume) === leading && this.#leaders.delete(volume));
      await leading;
      return base;
    }
    const source = await lead.catch(() => undefined);
    if (source && source !== host.name) {
      try {
        await this.#push(source, host, volume, image, ctx);
        return base;
      } catch (error) {
        if (!image.url || (NovaCronError.isInstance(error) && error.code === 'Aborted')) throw error;
        this.#options.log?.(`kvm: copying image ${volume} from ${source} to ${host.name} failed (${(error as Error).message}); fetching it from its URL instead`);
      }
    }
    await this.#obtain(host, imageName, image, volume, ctx);
    return base;
  }

  /** From another host that has it, else from the URL. */
  async #obtain(host: KvmHost, imageName: string, image: ImageConfig, volume: string, ctx: OperationContext): Promise<void> {
    const source = await this.#findSource(host, volume, ctx);
    if (source) {
      try {
        await this.#push(source, host, volume, image, ctx);
        return;
      } catch (error) {
        if (!image.url || (NovaCronError.isInstance(error) && error.code === 'Aborted')) throw error;
        this.#options.log?.(`kvm: copying image ${volume} from ${source} to ${host.name} failed (${(error as Error).message}); fetching it from its URL instead`);
      }
    }
    if (!image.url) {
      throw new NotFoundError(`${host.name}: image "${imageName}" (volume ${volume}) is in pool ${host.pool} on no host of the provider`, {
        context: { host: host.name, operation: 'create' },
        hint: 'put the volume into the pool of one host (virsh vol-upload); the others get it from there, or give the image a url',
      });
    }
    await this.#fetch(host, imageName, image, volume, ctx);
  }

  async #has(host: KvmHost, volume: string, ctx: OperationContext): Promise<boolean> {
    const r = await this.#options.virshFor(host.name).tryRun(['vol-info', volume, '--pool', host.pool], { ...(ctx.signal ? { signal: ctx.signal } : {}), operation: 'create' });
    if (!r.error) return true;
    if (r.error.code === 'NotFound') return false;
    throw r.error;
  }

  /** Another host of the provider whose pool has the volume, or undefined; hosts that do not answer are passed over. */
  async #findSource(target: KvmHost, volume: string, ctx: OperationContext): Promise<string | undefined> {
    const others = [...this.#options.hosts.values()].filter((h) => h.name !== target.name);
    const found = await Promise.all(others.map((h) => this.#has(h, volume, ctx).catch(() => false)));
    return others.find((_h, i) => found[i])?.name;
  }

  async #poolDir(host: KvmHost, ctx: OperationContext): Promise<string> {
    const virsh = this.#options.virshFor(host.name);
    const xml = await virsh.run(['pool-dumpxml', host.pool], { ...(ctx.signal ? { signal: ctx.signal } : {}), operation: 'create' });
    const node = parseXml(xml).node;
    const dir = textOf(child(node, 'target'), 'path');
    if (node.attrs['type'] !== 'dir' || !dir) {
      throw new InvalidInputError(`${host.name}: pool ${host.pool} is not a directory pool, so images cannot be cached in it`, {
        context: { host: host.name, operation: 'create' },
        hint: "upload the image into the pool yourself and name it as the image's `volume`",
      });
    }
    return assertName('path', dir, 'pool path', { host: host.name });
  }

  /** The host fetches the URL itself into its pool, under its lock, and checks the checksum before the file gets its name. */
  async #fetch(host: KvmHost, imageName: string, image: ImageConfig, volume: string, ctx: OperationContext): Promise<void> {
    if (!/^https?:\/\//.test(image.url!)) throw new InvalidInputError(`image "${imageName}": only http(s) URLs can be fetched`, { context: { host: host.name }, hint: 'serve the image over http(s), or put it in the pool and name its volume' });
    const dir = await this.#poolDir(host, ctx);
    const virsh = this.#options.virshFor(host.name);
    const q = (s: string) => virsh.quote(s);
    const sha = image.checksum?.slice('sha256:'.length);
    const script = [
      'set -e',
      lockDirScript(virsh, this.#options.lockDir),
      takeLockScript(virsh, `image-${volume}`),
      `d=${q(dir)}; f=${q(volume)}; t="$d/.$f.part.$$"`,
      // Another process got it while this one waited for the lock.
      `if [ -e "$d/$f" ]; then echo present; exit 0; fi`,
      `trap 'rm -f "$t"' EXIT`,
      `if command -v curl >/dev/null 2>&1; then curl -fsSL --retry 3 -o "$t" ${q(image.url!)}; ` +
        `elif command -v wget >/dev/null 2>&1; then wget -q -O "$t" ${q(image.url!)}; ` +
        `else echo 'error: neither curl nor wget is installed on the host' >&2; exit 127; fi`,
      ...(sha ? [`echo ${q(`${sha}  `)}"$t" | sha256sum -c --status - || { echo 'error: checksum mismatch for the downloaded image' >&2; exit 1; }`] : []),
      'mv -f "$t" "$d/$f"; trap - EXIT',
      `${virsh.commandLine(['pool-refresh', host.pool])} </dev/null >/dev/null`,
      'echo fetched',
    ].join('\n');
    ctx.onProgress?.({ operation: 'create', phase: 'image-download', message: `${host.name}: fetching ${image.url}` });
    const result = await this.#options.queue.run(`pool:${host.name}/${host.pool}`, this.#options.perPool, () => virsh.script(script, { ...(ctx.signal ? { signal: ctx.signal } : {}), timeoutMs: 3_600_000 }), ctx.signal);
    if (result.code !== 0) {
      throw new InvalidInputError(`${host.name}: fetching image "${imageName}" from ${image.url} failed: ${result.stderr.trim().slice(0, 400) || `exit ${result.code}`}`, {
        context: virsh.context({ operation: 'create' }),
        hint: 'check that the host can reach the URL and that the checksum is right',
      });
    }
    if (result.stdout.includes('fetched')) {
      this.#stats.fetches++;
      this.#options.log?.(`kvm: ${host.name}: fetched image ${volume} from ${image.url}`);
    }
  }

  /**
   * Streams the volume from `sourceName` to `target`, host to host: the source runs `ssh` to
   * the target (its own key, or the user's agent when `ssh.forwardAgent` is set; the target's
   * host key checked against the same known_hosts entries this machine trusts), the target
   * writes a temporary file, checks it (the image's checksum, else the source's sha256) and
   * only then gives it its name.
   */
  async #push(sourceName: string, target: KvmHost, volume: string, image: ImageConfig, ctx: OperationContext): Promise<void> {
    const source = this.#options.hosts.get(sourceName)!;
    const from = this.#options.virshFor(source.name);
    const to = this.#options.virshFor(target.name);
    const dir = await this.#poolDir(target, ctx);
    const q = (s: string) => from.quote(s);
    const sha = image.checksum?.slice('sha256:'.length);
    const targetScript = [
      'set -e',
      lockDirScript(to, this.#options.lockDir),
      takeLockScript(to, `image-${volume}`),
      `d=${to.quote(dir)}; f=${to.quote(volume)}; t="$d/.$f.part.$$"`,
      `if [ -e "$d/$f" ]; then cat >/dev/null; echo present; exit 0; fi`,
      `trap 'rm -f "$t"' EXIT`,
      'cat > "$t"',
      `echo "$1  $t" | sha256sum -c --status - || { echo 'error: checksum mismatch after the copy' >&2; exit 1; }`,
      'mv -f "$t" "$d/$f"; trap - EXIT',
      `${to.commandLine(['pool-refresh', target.pool])} </dev/null >/dev/null`,
      'echo pushed',
    ].join('\n');
    const known = knownHostLines(target.ssh);
    const endpoint = target.ssh.jump ? undefined : target.ssh;
    if (!endpoint) throw new UnsupportedError(`${target.name} is reached through a jump host; hosts cannot copy images to it directly`, { context: { host: target.name }, hint: 'put the image on it by URL' });
    const sourceScript = [
      'set -e',
      `src=$(${from.commandLine(['vol-path', '--pool', source.pool, volume])} </dev/null)`,
      sha ? `sum=${q(sha)}` : `sum=$(sha256sum "$src" | cut -d' ' -f1)`,
      `kh=$(mktemp); trap 'rm -f "$kh"' EXIT`,
      `printf '%s\\n' ${known.map(q).join(' ')} > "$kh"`,
      `command -v ssh >/dev/null 2>&1 || { echo 'error: ssh: not found on the source host' >&2; exit 127; }`,
      // The command the target's shell runs; the checksum (hex) is appended as its argument.
      `rc=${q(`sh -c ${to.quote(targetScript)} novacron-copy`)}`,
      `ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$kh" -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=${Math.ceil(target.ssh.auth.connectTimeoutMs / 1000)} ` +
        `-p ${target.ssh.port} ${q(`${target.ssh.user}@${target.ssh.address}`)} "$rc $sum" < "$src"`,
    ].join('\n');
    ctx.onProgress?.({ operation: 'create', phase: 'image-copy', message: `${source.name} → ${target.name}: ${volume}` });
    const result = await this.#options.queue.run(`pool:${target.name}/${target.pool}`, this.#options.perPool, () =>
      from.transport.exec(source.ssh, { command: sourceScript, ...(ctx.signal ? { signal: ctx.signal } : {}), timeoutMs: 3_600_000, ...(source.ssh.auth.forwardAgent ? { agentForward: true } : {}) }),
    ctx.signal);
    if (result.code !== 0) throw pushError(source, target, result.stderr);
    if (result.stdout.includes('pushed')) {
      this.#stats.pushes++;
      this.#options.log?.(`kvm: copied image ${volume} from ${source.name} to ${target.name}, host to host`);
    }
  }
}

/** The known_hosts lines this machine trusts for the endpoint, in plain form for a temporary file on another host. */
function knownHostLines(endpoint: SshEndpoint): string[] {
  const file = endpoint.auth.knownHosts;
  if (!existsSync(file)) return [];
  const name = knownHostName(endpoint.address, endpoint.port);
  return parseKnownHosts(readFileSync(file, 'utf8'), file)
    .filter((e) => !e.marker && entryMatches(e, name))
    .map((e) => `${name} ${e.keyType} ${e.key.toString('base64')}`);
}

/** What went wrong between two hosts, with the cause named. */
function pushError(source: KvmHost, target: KvmHost, stderr: string): NovaCronError {
  const detail = stderr.trim().split('\n').slice(-3).join(' ').slice(0, 400);
  const context = { host: target.name, operation: 'create' };
  if (/Permission denied \(/.test(stderr)) {
    return new AuthFailedError(`${source.name} may not log in to ${target.name} over SSH to copy an image: ${detail}`, {
      context,
      hint: source.ssh.auth.forwardAgent
        ? `agent forwarding may be disabled on ${source.name} (AllowAgentForwarding no in its sshd_config), or your agent's key is not authorized on ${target.name}`
        : `authorize ${source.name}'s key (${source.ssh.user}'s ~/.ssh/id_*.pub there) for ${target.ssh.user} on ${target.name}, or set ssh.forwardAgent with an agent`,
    });
  }
  if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/.test(stderr)) {
    return new AuthFailedError(`${source.name} could not verify ${target.name}'s host key: ${detail}`, { context, hint: `record ${target.ssh.address}'s key in ${target.ssh.auth.knownHosts} (it is passed on to ${source.name})` });
  }
  if (/not found/.test(stderr) && /ssh|sha256sum|virsh/.test(stderr)) return new UnsupportedError(`${source.name}: ${detail}`, { context, hint: 'install openssh-client and coreutils on the hosts' });
  return new NovaCronError('Provider', 'server', `copying an image from ${source.name} to ${target.name} failed: ${detail || 'no message'}`, { context, retryable: true, hint: 'check that the hosts reach each other over SSH' });
}
