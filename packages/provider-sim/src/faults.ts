import { z } from 'zod';
import { AbortedError, CapacityExceededError, InvalidInputError, NovaCronError, ThrottledError, UnreachableError, type Clock } from '@novacron/core';

/**
 * Faults to inject, for tests: fail, hang, throttle or "crash" the Nth call of an
 * operation, at a given stage inside it. `crash` leaves whatever the operation had made so
 * far and throws, as if the process died there: the case an idempotent re-run must mend.
 */
export const faultRule = z.strictObject({
  operation: z.string().min(1),
  /** 1-based call number of this operation in this process; omitted means every call. */
  nth: z.number().int().min(1).optional(),
  /** How many times the rule fires in all. @default 1 with nth, unlimited without */
  times: z.number().int().min(1).optional(),
  /**
   * Where inside the operation: create: start, volume, define, end; delete: start,
   * volumes-deleted; migrate: start, link (the link breaks midway: the VM stays on the
   * source), switch; resize: start, nics (`fail` there: a refused NIC hot-plug),
   * nics-detached; awaitReady: start, guest (`fail` there: the guest never comes up,
   * `ok: false` rather than an error). @default 'start'
   */
  stage: z.string().min(1).default('start'),
  /** `capacity`: a CapacityExceeded error, as a host or zone with no room left for the VM answers. */
  action: z.enum(['fail', 'hang', 'throttle', 'unreachable', 'crash', 'capacity']),
  /** Only for VMs on this host, or only this VM. */
  host: z.string().optional(),
  vm: z.string().optional(),
  message: z.string().optional(),
});
export type FaultRule = z.input<typeof faultRule>;
type ParsedRule = z.output<typeof faultRule>;

export const faultRules = z.array(faultRule);

/** Thrown by the `crash` action: the simulated process died mid-operation, leaving its partial work. */
export class SimulatedCrash extends NovaCronError {
  constructor(operation: string, stage: string) {
    super('Provider', 'server', `simulated crash in ${operation} at stage "${stage}"`, { context: { operation } });
  }
}

interface Armed {
  readonly rule: ParsedRule;
  fired: number;
}

export class FaultInjector {
  readonly #rules: Armed[] = [];
  readonly #calls = new Map<string, number>();

  constructor(rules: readonly FaultRule[] = []) {
    for (const rule of rules) this.add(rule);
  }

  /** Reads rules from NOVACRON_SIM_FAULTS (a JSON array), for tests that drive the CLI. */
  static fromEnv(value: string | undefined): FaultInjector {
    if (!value) return new FaultInjector();
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch (error) {
      throw new InvalidInputError('NOVACRON_SIM_FAULTS is not valid JSON', { cause: error });
    }
    const result = faultRules.safeParse(parsed);
    if (!result.success) throw new InvalidInputError(`NOVACRON_SIM_FAULTS: ${result.error.issues.map((i) => `[${i.path.join('.')}] ${i.message}`).join('; ')}`);
    return new FaultInjector(result.data);
  }

  add(rule: FaultRule): void {
    this.#rules.push({ rule: faultRule.parse(rule), fired: 0 });
  }

  clear(): void {
    this.#rules.length = 0;
  }

  /** Counts a call of an operation; returns its 1-based number. */
  call(operation: string): number {
    const n = (this.#calls.get(operation) ?? 0) + 1;
    this.#calls.set(operation, n);
    return n;
  }

  calls(operation: string): number {
    return this.#calls.get(operation) ?? 0;
  }

  /** Fires the first matching rule, if any, at this point of an operation. */
  async check(point: { operation: string; call: number; stage: string; host?: string; vm?: string }, clock: Clock, signal?: AbortSignal): Promise<void> {
    const armed = this.#rules.find(({ rule, fired }) => {
      if (rule.operation !== point.operation && rule.operation !== '*') return false;
      if (rule.stage !== point.stage) return false;
      if (rule.nth !== undefined && rule.nth !== point.call) return false;
      if (rule.host !== undefined && rule.host !== point.host) return false;
      if (rule.vm !== undefined && rule.vm !== point.vm) return false;
      const limit = rule.times ?? (rule.nth !== undefined ? 1 : Infinity);
      return fired < limit;
    });
    if (!armed) return;
    armed.fired++;
    const { rule } = armed;
    const context = { operation: point.operation, ...(point.vm ? { vm: point.vm } : {}), ...(point.host ? { host: point.host } : {}) };
    const message = rule.message ?? `injected ${rule.action} in ${point.operation} (call ${point.call}, stage ${point.stage})`;
    switch (rule.action) {
      case 'fail':
        throw new NovaCronError('Provider', 'server', message, { context });
      case 'throttle':
        throw new ThrottledError(message, { context });
      case 'unreachable':
        throw new UnreachableError(message, { context });
      case 'capacity':
        throw new CapacityExceededError(rule.message ?? `injected capacity shortage${point.host ? `: host "${point.host}" has no room` : ''} in ${point.operation} (call ${point.call}, stage ${point.stage})`, { context });
      case 'crash':
        throw new SimulatedCrash(point.operation, point.stage);
      case 'hang':
        await clock.sleep(2 ** 31 - 1, signal);
        throw new AbortedError(message, { context });
    }
  }
}
