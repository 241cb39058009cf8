import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Terraform's provider schema JSON (`terraform providers schema -json`), the parts checked here. */
export interface SchemaAttribute {
  readonly type?: unknown;
  readonly nested_type?: { readonly attributes: Readonly<Record<string, SchemaAttribute>>; readonly nesting_mode: string };
  readonly required?: boolean;
  readonly optional?: boolean;
  readonly computed?: boolean;
}

export interface SchemaBlock {
  readonly attributes?: Readonly<Record<string, SchemaAttribute>>;
  readonly block_types?: Readonly<Record<string, { readonly nesting_mode: string; readonly block: SchemaBlock; readonly min_items?: number; readonly max_items?: number }>>;
}

interface ProviderSchema {
  readonly provider?: { readonly block: SchemaBlock };
  readonly resource_schemas?: Readonly<Record<string, { readonly block: SchemaBlock }>>;
  readonly data_source_schemas?: Readonly<Record<string, { readonly block: SchemaBlock }>>;
}

export interface ProviderSchemaDocument {
  readonly format_version: string;
  readonly provider_schemas: Readonly<Record<string, ProviderSchema>>;
}

/** Provider schemas by source address (`dmacvicar/libvirt`, `hashicorp/aws`, `terraform.io/builtin/terraform`). */
export interface ProviderSchemas {
  readonly bySource: ReadonlyMap<string, ProviderSchema>;
}

export interface SchemaProblem {
  /** Where in the synthesized JSON: `resource.libvirt_domain.web-0.devices.disks[0].target`. */
  readonly path: string;
  readonly message: string;
}

const BUILTIN = 'terraform.io/builtin/terraform';
const META_ARGUMENTS = new Set(['provider', 'depends_on', 'count', 'for_each', 'lifecycle', 'provisioner', 'connection']);

/** The schemas this package's bindings were generated from (`packages/cdktf/schemas`). */
export function loadSchemas(dir: string = fileURLToPath(new URL('../../schemas/', import.meta.url))): ProviderSchemas {
  const bySource = new Map<string, ProviderSchema>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const doc = JSON.parse(readFileSync(`${dir.replace(/\/$/, '')}/${file}`, 'utf8')) as ProviderSchemaDocument;
    for (const [source, schema] of Object.entries(doc.provider_schemas)) bySource.set(normalizeSource(source), schema);
  }
  return { bySource };
}

/**
 * Checks a synthesized stack (`cdk.tf.json`, or `Testing.synth` output) against provider
 * schemas: every provider and resource type is known, every attribute and block exists in the
 * schema at its place, required ones are present, read-only ones are not set, and values have
 * the schema's type (references such as `${libvirt_volume.x.path}` stand for any type).
 * Returns every problem with its path; an empty list means the stack fits the schemas.
 */
export function validateSynth(synth: string | object, schemas: ProviderSchemas): SchemaProblem[] {
  const doc = (typeof synth === 'string' ? JSON.parse(synth) : synth) as Record<string, unknown>;
  const problems: SchemaProblem[] = [];
  const localNames = new Map<string, string>(); // local name → source
  const required = asObject(asObject(doc['terraform'])?.['required_providers']) ?? {};
  for (const [local, value] of Object.entries(required)) {
    const source = typeof value === 'string' ? value : (asObject(value)?.['source'] as string | undefined);
    if (!source) {
      problems.push({ path: `terraform.required_providers.${local}`, message: 'has no source' });
      continue;
    }
    const normalized = normalizeSource(source);
    if (!schemas.bySource.has(normalized)) problems.push({ path: `terraform.required_providers.${local}`, message: `no schema for provider "${normalized}"` });
    localNames.set(local, normalized);
  }
  localNames.set('terraform', BUILTIN);

  for (const [local, configs] of Object.entries(asObject(doc['provider']) ?? {})) {
    const schema = schemas.bySource.get(localNames.get(local) ?? '');
    for (const [i, config] of (Array.isArray(configs) ? configs : [configs]).entries()) {
      const path = `provider.${local}[${i}]`;
      if (!schema?.provider) {
        problems.push({ path, message: `provider "${local}" is not in terraform.required_providers with a known schema` });
        continue;
      }
      const { alias: _alias, ...rest } = asObject(config) ?? {};
      checkBlock(schema.provider.block, rest, path, problems);
    }
  }

  for (const [kind, section] of [
    ['resource', 'resource_schemas'],
    ['data', 'data_source_schemas'],
  ] as const) {
    for (const [type, instances] of Object.entries(asObject(doc[kind]) ?? {})) {
      for (const [name, body] of Object.entries(asObject(instances) ?? {})) {
        const path = `${kind}.${type}.${name}`;
        const values = asObject(body) ?? {};
        const local = typeof values['provider'] === 'string' ? values['provider'].split('.')[0]! : type === 'terraform_data' ? 'terraform' : type.split('_')[0]!;
        const schema = schemas.bySource.get(localNames.get(local) ?? '')?.[section]?.[type];
        if (!schema) {
          problems.push({ path, message: `"${type}" is not a ${kind === 'data' ? 'data source' : 'resource'} of provider "${localNames.get(local) ?? local}"` });
          continue;
        }
        const attributes = Object.fromEntries(Object.entries(values).filter(([key]) => !META_ARGUMENTS.has(key)));
        checkBlock(schema.block, attributes, path, problems);
      }
    }
  }
  return problems;
}

function checkBlock(block: SchemaBlock, values: Record<string, unknown>, path: string, problems: SchemaProblem[]): void {
  const attributes = block.attributes ?? {};
  const blocks = block.block_types ?? {};
  for (const [key, value] of Object.entries(values)) {
    if (key === '//') continue;
    const at = `${path}.${key}`;
    const attribute = attributes[key];
    const nested = blocks[key];
    if (attribute) {
      if (attribute.computed && !attribute.optional && !attribute.required) problems.push({ path: at, message: 'is read-only (computed by the provider)' });
      else checkAttribute(attribute, value, at, problems);
    } else if (nested) {
      const items = Array.isArray(value) ? value : [value];
      if (isToken(value)) continue;
      if (nested.nesting_mode === 'single' || nested.nesting_mode === 'group') {
        if (Array.isArray(value)) problems.push({ path: at, message: 'is a single block, not a list' });
      }
      if (nested.max_items !== undefined && items.length > nested.max_items) problems.push({ path: at, message: `takes at most ${nested.max_items} block(s), got ${items.length}` });
      if (nested.min_items !== undefined && items.length < nested.min_items) problems.push({ path: at, message: `needs at least ${nested.min_items} block(s), got ${items.length}` });
      items.forEach((item, i) => {
        const object = asObject(item);
        if (!object) problems.push({ path: `${at}[${i}]`, message: 'is not a block (object)' });
        else checkBlock(nested.block, object, Array.isArray(value) ? `${at}[${i}]` : at, problems);
      });
    } else {
      problems.push({ path: at, message: `is not in the schema (known: ${[...Object.keys(attributes), ...Object.keys(blocks)].sort().join(', ') || 'nothing'})` });
    }
  }
  for (const [key, attribute] of Object.entries(attributes)) {
    if (attribute.required && values[key] === undefined) problems.push({ path: `${path}.${key}`, message: 'is required' });
  }
  for (const [key, nested] of Object.entries(blocks)) {
    if ((nested.min_items ?? 0) > 0 && values[key] === undefined) problems.push({ path: `${path}.${key}`, message: `needs at least ${nested.min_items} block(s)` });
  }
}

function checkAttribute(attribute: SchemaAttribute, value: unknown, path: string, problems: SchemaProblem[]): void {
  if (value === null || isToken(value)) return;
  if (attribute.nested_type) {
    const { attributes, nesting_mode: mode } = attribute.nested_type;
    const check = (item: unknown, at: string) => {
      const object = asObject(item);
      if (!object) problems.push({ path: at, message: 'is not an object' });
      else checkBlock({ attributes }, object, at, problems);
    };
    if (mode === 'single') check(value, path);
    else if (mode === 'map') for (const [k, v] of Object.entries(asObject(value) ?? {})) check(v, `${path}.${k}`);
    else if (Array.isArray(value)) value.forEach((item, i) => check(item, `${path}[${i}]`));
    else problems.push({ path, message: `is a ${mode} of objects, got ${describe(value)}` });
    return;
  }
  checkType(attribute.type, value, path, problems);
}

function checkType(type: unknown, value: unknown, path: string, problems: SchemaProblem[]): void {
  if (value === null || isToken(value) || type === 'dynamic' || type === undefined) return;
  if (type === 'string') {
    if (!['string', 'number', 'boolean'].includes(typeof value)) problems.push({ path, message: `is a string, got ${describe(value)}` });
    return;
  }
  if (type === 'number') {
    if (typeof value !== 'number' && !(typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value)))) problems.push({ path, message: `is a number, got ${describe(value)}` });
    return;
  }
  if (type === 'bool') {
    if (typeof value !== 'boolean' && value !== 'true' && value !== 'false') problems.push({ path, message: `is a bool, got ${describe(value)}` });
    return;
  }
  if (Array.isArray(type)) {
    const [kind, element] = type as [string, unknown];
    if (kind === 'list' || kind === 'set') {
      if (!Array.isArray(value)) problems.push({ path, message: `is a ${kind}, got ${describe(value)}` });
      else value.forEach((item, i) => checkType(element, item, `${path}[${i}]`, problems));
    } else if (kind === 'map') {
      const object = asObject(value);
      if (!object) problems.push({ path, message: `is a map, got ${describe(value)}` });
      else for (const [k, v] of Object.entries(object)) checkType(element, v, `${path}.${k}`, problems);
    } else if (kind === 'object') {
      const object = asObject(value);
      if (!object) problems.push({ path, message: `is an object, got ${describe(value)}` });
      else for (const [k, v] of Object.entries(object)) checkType((element as Record<string, unknown>)[k], v, `${path}.${k}`, problems);
    }
  }
}

/** A Terraform reference or expression, which stands for a value of any type. */
function isToken(value: unknown): boolean {
  return typeof value === 'string' && value.includes('${');
}

function asObject(value: unknown): Record<string, unknown> | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function describe(value: unknown): string {
  return Array.isArray(value) ? 'a list' : value === null ? 'null' : `a ${typeof value}`;
}

function normalizeSource(source: string): string {
  return source.replace(/^registry\.terraform\.io\//, '').toLowerCase();
}
