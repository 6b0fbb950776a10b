/**
 * Writes docs/configuration.md from the zod schemas that validate the configuration: the relay's environment
 * (service/config.ts) and relay.config.json (app/config.ts). Run `npm run docs:config` after changing either schema;
 * test/docs/configuration-doc.test.ts fails while the committed file differs from what this renders.
 *
 * Each field documents itself with `.meta({ description, allowed?, unset? })`: `description` is required, `allowed`
 * replaces the allowed values derived from the schema (enums, ranges, patterns) when a sentence says it better, and
 * `unset` says what applies when the field is absent and the schema's own default cannot say it.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { relayConfigSchema } from '../app/config';
import { serviceEnvSchema } from '../service/config';

export const CONFIGURATION_DOC = join(__dirname, 'configuration.md');

/** What `.meta()` on a field may carry for this reference. */
export interface FieldDoc {
  readonly description?: string;
  readonly allowed?: string;
  readonly unset?: string;
}

/** Fields that have no description; the message names each one and says how to add it. */
export class MissingDescriptionError extends Error {
  readonly code = 'missing_description';
  constructor(readonly fields: readonly string[]) {
    super(
      `${fields.length} configuration field${fields.length === 1 ? ' has' : 's have'} no description:\n` +
        fields.map((f) => `  - ${f}`).join('\n') +
        "\nAdd `.meta({ description: '…' })` to each field's schema, then run `npm run docs:config`.",
    );
    this.name = 'MissingDescriptionError';
  }
}

interface Row {
  readonly name: string;
  readonly type?: string;
  readonly default: string;
  readonly allowed: string;
  readonly description: string;
}

/** The reference table of an environment-variable schema (an object of optional strings); `source` names the file. */
export function renderEnvTable(schema: z.ZodObject, source: string): string {
  const missing: string[] = [];
  const rows: Row[] = Object.entries(schema.shape as Record<string, z.ZodType>).map(([name, field]) => {
    const doc = metaOf(field);
    if (!doc.description) missing.push(`${source}: ${name}`);
    return {
      name: `\`${name}\``,
      default: doc.unset ?? envDefault(field),
      allowed: doc.allowed ?? (derivedAllowed(z.toJSONSchema(field, { io: 'input', unrepresentable: 'any' }) as JsonNode) || 'any string'),
      description: doc.description ?? '',
    };
  });
  if (missing.length > 0) throw new MissingDescriptionError(missing);
  return table(['variable', 'default', 'allowed', 'meaning'], rows.map((r) => [r.name, r.default, r.allowed, r.description]));
}

/**
 * The reference tables of a JSON config schema: one table for the top level and one for the items of every list of
 * objects (e.g. `environments[]`), each titled by its path.
 */
export function renderConfigTables(schema: z.ZodType, source: string): string {
  const root = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonNode;
  const sections: { title: string; node: JsonNode }[] = [{ title: '', node: root }];
  const missing: string[] = [];
  const out: string[] = [];
  for (let i = 0; i < sections.length; i++) {
    const { title, node } = sections[i];
    const rows: Row[] = [];
    walkObject(resolve(root, node), '', (path, field, required, onlyWhen) => {
      const doc = field as JsonNode & FieldDoc;
      const shown = title ? `${title}.${path}` : path;
      if (!doc.description) missing.push(`${source}: ${shown}`);
      const items = field.type === 'array' && field.items ? resolve(root, field.items) : undefined;
      if (items && isObjectLike(items)) sections.push({ title: `${shown}[]`, node: items });
      rows.push({
        name: `\`${path}\``,
        type: typeName(root, field),
        default: doc.unset ?? configDefault(field, required),
        allowed: doc.allowed ?? derivedAllowed(field),
        description: (onlyWhen ? `(only with ${onlyWhen}) ` : '') + (doc.description ?? ''),
      });
      // Lists of objects get a table of their own; plain objects and unions continue in this one.
      return items === undefined;
    });
    if (title) out.push(`### \`${title}\``, '');
    out.push(table(['field', 'type', 'default', 'allowed', 'meaning'], rows.map((r) => [r.name, r.type ?? '', r.default, r.allowed, r.description])), '');
  }
  if (missing.length > 0) throw new MissingDescriptionError(missing);
  return out.join('\n').trimEnd();
}

/** The whole of docs/configuration.md. */
export function renderConfigurationDoc(): string {
  const problems: string[] = [];
  const attempt = (render: () => string): string => {
    try {
      return render();
    } catch (err) {
      if (!(err instanceof MissingDescriptionError)) throw err;
      problems.push(...err.fields);
      return '';
    }
  };
  const env = attempt(() => renderEnvTable(serviceEnvSchema, 'service/config.ts'));
  const config = attempt(() => renderConfigTables(relayConfigSchema, 'app/config.ts'));
  if (problems.length > 0) throw new MissingDescriptionError(problems);
  return [
    '# Configuration reference',
    '',
    '<!-- Generated by `npm run docs:config` (docs/generate-configuration.ts) from the zod schemas in service/config.ts',
    '     and app/config.ts. Edit the schemas\' .meta() and regenerate; a test fails while this file is stale. -->',
    '',
    'Two things are configured: each relay process, through environment variables, and the infrastructure, through',
    '`relay.config.json`. Both are validated when they are read, and a bad value stops the program with one message',
    'that lists every problem: the variable or field, the value received and what is allowed.',
    '',
    '- [Relay environment variables](#relay-environment-variables)',
    '- [relay.config.json](#relayconfigjson)',
    '',
    '## Relay environment variables',
    '',
    'Read once at start-up (`service/config.ts`). An empty value counts as unset. An invalid environment stops the',
    'relay with exit code 1 before it listens. On Elastic Beanstalk the stacks set the variables that connect the',
    'relay to its environment (the `relay` construct in [infrastructure.md](infrastructure.md#what-each-stack-contains)).',
    '',
    env,
    '',
    '## relay.config.json',
    '',
    'Read by `npm run synth` and the ops commands (`app/config.ts`). Unknown fields are rejected, so a misspelt field',
    'is an error rather than a silent default. An example is in [infrastructure.md](infrastructure.md#relayconfigjson).',
    '',
    config,
    '',
  ].join('\n');
}

/** The merged `.meta()` of a field and of the schemas it wraps (optional, default, pipe), the outermost winning. */
function metaOf(schema: z.core.$ZodType): FieldDoc {
  const own = (z.globalRegistry.get(schema) ?? {}) as FieldDoc;
  const def = schema._zod.def as { innerType?: z.core.$ZodType; in?: z.core.$ZodType };
  const inner = def.innerType ?? def.in;
  return inner ? { ...metaOf(inner), ...own } : own;
}

/** What an unset variable becomes: the schema's own answer to an absent value. */
function envDefault(field: z.ZodType): string {
  const parsed = field.safeParse(undefined);
  if (!parsed.success || parsed.data === undefined || parsed.data === null) return 'unset';
  return code(typeof parsed.data === 'string' ? parsed.data : JSON.stringify(parsed.data));
}

/** The subset of JSON Schema that z.toJSONSchema emits for these schemas. */
interface JsonNode {
  readonly type?: string;
  readonly properties?: Record<string, JsonNode>;
  readonly required?: readonly string[];
  readonly items?: JsonNode;
  readonly additionalProperties?: boolean | JsonNode;
  readonly oneOf?: readonly JsonNode[];
  readonly anyOf?: readonly JsonNode[];
  readonly enum?: readonly unknown[];
  readonly const?: unknown;
  readonly default?: unknown;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly minItems?: number;
  readonly pattern?: string;
  readonly $ref?: string;
  readonly $defs?: Record<string, JsonNode>;
}

/**
 * Calls `visit` for every property of an object (or of each variant of a union of objects), depth first. `visit`
 * returns whether to descend into the property's own properties.
 */
function walkObject(
  node: JsonNode,
  prefix: string,
  visit: (path: string, field: JsonNode, required: boolean, onlyWhen: string | undefined) => boolean,
): void {
  const variants = node.oneOf ?? node.anyOf;
  if (variants) {
    const discriminator = findDiscriminator(variants);
    const seen = new Set<string>();
    for (const variant of variants) {
      const tag = discriminator ? variant.properties?.[discriminator]?.const : undefined;
      for (const [key, field] of Object.entries(variant.properties ?? {})) {
        if (key === discriminator) {
          if (seen.has(key)) continue;
          seen.add(key);
          visit(`${prefix}${key}`, mergeDiscriminator(variants, key), true, undefined);
          continue;
        }
        const onlyWhen = tag === undefined ? undefined : `\`${discriminator}: ${JSON.stringify(tag)}\``;
        if (visit(`${prefix}${key}`, field, variant.required?.includes(key) ?? false, onlyWhen)) walkObject(field, `${prefix}${key}.`, visit);
      }
    }
    return;
  }
  for (const [key, field] of Object.entries(node.properties ?? {})) {
    if (visit(`${prefix}${key}`, field, node.required?.includes(key) ?? false, undefined)) walkObject(field, `${prefix}${key}.`, visit);
  }
}

/** The property every variant pins to a constant, if any (a discriminated union's tag). */
function findDiscriminator(variants: readonly JsonNode[]): string | undefined {
  const first = variants[0]?.properties ?? {};
  return Object.keys(first).find((key) => variants.every((v) => v.properties?.[key]?.const !== undefined));
}

/** One row for a union's tag: every constant it may take, each with its variant's description. */
function mergeDiscriminator(variants: readonly JsonNode[], key: string): JsonNode & FieldDoc {
  const tags = variants.map((v) => v.properties?.[key] as JsonNode & FieldDoc);
  return {
    type: 'string',
    enum: tags.map((t) => t.const),
    description: tags.every((t) => t.description) ? tags.map((t) => `${code(JSON.stringify(t.const))}: ${t.description}`).join(' ') : undefined,
  };
}

function resolve(root: JsonNode, node: JsonNode): JsonNode {
  if (!node.$ref) return node;
  const name = node.$ref.replace(/^#\/\$defs\//, '');
  const target = root.$defs?.[name];
  if (!target) throw new Error(`cannot resolve ${node.$ref} in the generated JSON Schema`);
  return resolve(root, target);
}

function isObjectLike(node: JsonNode): boolean {
  return node.type === 'object' || (node.oneOf ?? node.anyOf ?? []).some((v) => v.type === 'object');
}

function typeName(root: JsonNode, node: JsonNode): string {
  const n = resolve(root, node);
  if (n.type === 'array') {
    const items = n.items ? resolve(root, n.items) : undefined;
    return items ? `list of ${isObjectLike(items) ? 'objects' : `${typeName(root, items)}s`}` : 'list';
  }
  if (n.oneOf ?? n.anyOf) return isObjectLike(n) ? 'object' : 'value';
  return n.type ?? 'value';
}

function configDefault(node: JsonNode, required: boolean): string {
  if (node.default !== undefined) {
    if (node.properties && typeof node.default === 'object' && node.default !== null && !Array.isArray(node.default)) return "each field's default";
    const text = JSON.stringify(node.default);
    return text.length <= 40 ? code(text) : "each field's default";
  }
  if (required) return 'required';
  return isObjectLike(node) && node.default === undefined && (node.required ?? []).length === 0 ? "each field's default" : '—';
}

/** Allowed values as the schema states them: constants, enums, ranges, lengths, patterns. */
function derivedAllowed(node: JsonNode): string {
  if (node.const !== undefined) return code(JSON.stringify(node.const));
  if (node.enum) return node.enum.map((v) => code(JSON.stringify(v))).join(', ');
  const parts: string[] = [];
  const min = node.minimum !== undefined && node.minimum > Number.MIN_SAFE_INTEGER ? node.minimum : undefined;
  const max = node.maximum !== undefined && node.maximum < Number.MAX_SAFE_INTEGER ? node.maximum : undefined;
  if (min !== undefined && max !== undefined) parts.push(`${min}-${max}`);
  else if (min !== undefined) parts.push(`>= ${min}`);
  else if (max !== undefined) parts.push(`<= ${max}`);
  if (node.minLength !== undefined && node.maxLength !== undefined) parts.push(`${node.minLength}-${node.maxLength} characters`);
  else if (node.minLength !== undefined) parts.push(`at least ${node.minLength} character${node.minLength === 1 ? '' : 's'}`);
  else if (node.maxLength !== undefined) parts.push(`at most ${node.maxLength} characters`);
  if (node.minItems !== undefined) parts.push(`at least ${node.minItems}`);
  if (node.pattern !== undefined) parts.push(`matches ${code(node.pattern)}`);
  if (node.type === 'array' && node.items) {
    const items = derivedAllowed(node.items);
    if (items) parts.push(`each ${items}`);
  }
  if (node.type === 'boolean') parts.push('`true`, `false`');
  return parts.join('; ');
}

function code(text: string): string {
  return `\`${text}\``;
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ].join('\n');
}

if (require.main === module) {
  try {
    writeFileSync(CONFIGURATION_DOC, renderConfigurationDoc());
    process.stdout.write('wrote docs/configuration.md\n');
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
