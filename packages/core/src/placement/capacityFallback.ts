import { CapacityExceededError } from '../errors/errors.js';
import type { ErrorContext } from '../errors/NovaCronError.js';
import type { InstanceType, Resources } from '../model/records.js';
import type { CreateVmRequest } from '../provider/Provider.js';
import type { Clock } from '../util/clock.js';
import { cheapestFit } from './capacity.js';

/** Where a cloud create may try: a zone and an instance (or machine) type. */
export interface ElasticPlacement {
  readonly zone: string;
  readonly type: string;
}

/** The types a size fits, cheapest first (then smaller, then by name). */
export function typesThatFit(types: readonly InstanceType[], need: Resources): InstanceType[] {
  return types
    .filter((t) => t.cpu >= need.cpu && t.memoryMiB >= need.memoryMiB && (t.gpu ?? 0) >= need.gpu)
    .sort((a, b) => a.pricePerHour - b.pricePerHour || a.memoryMiB - b.memoryMiB || (a.name < b.name ? -1 : 1));
}

/**
 * What a cloud provider remembers about capacity shortages: a zone/type pair that refused a
 * launch stays out of the inventory for a cooldown, so the next plan places elsewhere, and
 * the order in which a create tries the places open to it. One piece for every cloud.
 */
export class CapacityMemory {
  readonly #until = new Map<string, number>();

  constructor(
    private readonly clock: Clock,
    readonly cooldownMs: number,
  ) {}

  isExhausted(zone: string, type: string): boolean {
    const key = `${zone}/${type}`;
    const until = this.#until.get(key);
    if (until === undefined) return false;
    if (until > this.clock.now()) return true;
    this.#until.delete(key);
    return false;
  }

  markExhausted(zone: string, type: string): void {
    this.#until.set(`${zone}/${type}`, this.clock.now() + this.cooldownMs);
  }

  /**
   * The places to try, best first: the type placement chose (else the cheapest that fits),
   * then the request's alternatives, or else the next cheapest types in the same zone (which
   * keeps every zone-level placement rule), at most `1 + fallbacks` in all.
   */
  candidates(options: {
    readonly request: CreateVmRequest;
    readonly zone: string;
    readonly typesIn: (zone: string) => readonly InstanceType[];
    readonly zoneOf: (host: string) => string;
    readonly fallbacks: number;
    readonly where: ErrorContext;
    /** "instance" or "machine", for messages. */
    readonly typeWord: string;
    readonly typesKey: string;
  }): ElasticPlacement[] {
    const { request, zone } = options;
    const fits = typesThatFit(options.typesIn(zone), request.resources);
    const first = request.instanceType ?? fits[0]?.name;
    if (!first) {
      const r = request.resources;
      throw new CapacityExceededError(`no ${options.typeWord} type in the catalog fits VM "${request.name}" (${r.cpu}/${r.memoryMiB}/${r.diskGiB}/${r.gpu} cpu/MiB/GiB/gpu)`, {
        context: options.where,
        hint: `lower the group's size, or add larger types to the provider's ${options.typesKey}`,
      });
    }
    const out: ElasticPlacement[] = [{ zone, type: first }];
    const add = (p: ElasticPlacement) => {
      if (!out.some((o) => o.zone === p.zone && o.type === p.type)) out.push(p);
    };
    if (request.alternatives) {
      for (const alt of request.alternatives) {
        const altZone = options.zoneOf(alt.host);
        const type = alt.instanceType ?? cheapestFit(options.typesIn(altZone), request.resources)?.name;
        if (type) add({ zone: altZone, type });
      }
    } else {
      for (const t of fits) add({ zone, type: t.name });
    }
    return out.slice(0, 1 + options.fallbacks);
  }
}
