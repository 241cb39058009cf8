import {
  migrationPolicy,
  NotFoundError,
  seededRandom,
  type Clock,
  type KvmProviderConfig,
  type MigrateRequest,
  type MigrationResult,
  type OperationContext,
  type VmRef,
} from '@novacron/core';
import type { LocatedDomain } from '../KvmProvider.js';
import { assertOwnedOnHost } from '../KvmProvider.js';
import { assertName } from '../names.js';
import type { MigrationEnv, MigrationHostAccess } from './access.js';
import { KVM_DEFAULTS, MigrationCalibration, TCG_DEFAULTS } from './calibration.js';
import { migrateCold, type ColdOptions } from './coldMigration.js';
import { estimateMove, type KvmMigrationEstimate } from './estimate.js';
import { migrateLive } from './liveMigration.js';
import { planMove } from './preflight.js';

export interface KvmMigrationsOptions {
  readonly provider: MigrationHostAccess;
  readonly config: KvmProviderConfig;
  readonly clock: Clock;
  readonly log?: (message: string) => void;
  /** Makes an image available on a host; without it a destination lacking the image is refused. */
  readonly ensureImage?: MigrationEnv['ensureImage'];
  /** Picks tunnel ports. @default seeded from the clock */
  readonly random?: () => number;
  readonly cold?: ColdOptions;
}

/**
 * Live and cold migration between a KvmProvider's hosts: what `KvmProvider.migrate` and
 * `estimateMigration` delegate to. Holds the provider's migration calibration.
 */
export class KvmMigrations {
  readonly calibration: MigrationCalibration;
  readonly #env: MigrationEnv;
  readonly #cold: ColdOptions;

  constructor(options: KvmMigrationsOptions) {
    this.calibration = new MigrationCalibration(options.config.domainType === 'qemu' ? TCG_DEFAULTS : KVM_DEFAULTS);
    this.#env = {
      provider: options.provider,
      config: options.config,
      clock: options.clock,
      random: options.random ?? seededRandom(options.clock.now() ^ 0x5eed),
      calibration: this.calibration,
      ...(options.ensureImage ? { ensureImage: options.ensureImage } : {}),
      ...(options.log ? { log: options.log } : {}),
    };
    this.#cold = options.cold ?? {};
  }

  /** Checks everything first (nothing moves if a check fails), then moves live or cold. */
  async migrate(ref: VmRef, request: MigrateRequest, ctx: OperationContext = {}): Promise<MigrationResult> {
    const found = await this.#owned(ref, 'migrate', ctx);
    const plan = await planMove(this.#env, found, request, ctx);
    ctx.onProgress?.({ operation: 'migrate', phase: 'planned', message: `${plan.mode} move of ${ref.name}: ${found.host.name} → ${plan.destination.name}` });
    return plan.mode === 'live' ? migrateLive(this.#env, plan, request, ctx) : migrateCold(this.#env, plan, request, ctx, this.#cold);
  }

  /** Measures what the pre-copy model needs for a move to `toHost` (see estimateMove). */
  async estimate(ref: VmRef, toHost: string, ctx: OperationContext = {}): Promise<KvmMigrationEstimate> {
    const found = await this.#owned(ref, 'estimateMigration', ctx);
    // The destination's checks apply to an estimate too (a prediction for an impossible move helps nobody).
    const plan = await planMove(this.#env, found, { toHost, mode: 'live', policy: migrationPolicy.parse({}) }, ctx);
    return estimateMove(this.#env, plan, ctx);
  }

  async #owned(ref: VmRef, operation: string, ctx: OperationContext): Promise<LocatedDomain> {
    const { provider } = this.#env;
    assertName('vm', ref.name, 'VM name', { provider: provider.name });
    const found = await provider.locate(ref, operation, ctx);
    if (!found) {
      throw new NotFoundError(`VM "${ref.name}" does not exist on any host of provider "${provider.name}"`, { context: { provider: provider.name, vm: ref.name, operation }, hint: 'it may have been deleted by hand: re-run apply to recreate it' });
    }
    assertOwnedOnHost(found, ref, provider.name, operation);
    return found;
  }
}
