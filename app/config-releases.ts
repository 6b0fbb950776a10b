/**
 * The release settings of relay.config.json: the promotion order of the environments, and which environments need a
 * passing delivery verification before a promotion into them. app/config.ts wires these into its schema.
 */
import { z } from 'zod';

/** Environment names the ledgers, stacks and promotion order accept. */
export const ENVIRONMENT_NAME_PATTERN = /^[a-z][a-z0-9-]{0,19}$/;

/** Top-level `promotionOrder`: the order a release moves through the environments. */
export const promotionOrderSchema = z
  .array(z.string({ error: 'an environment name' }), { error: 'a list of environment names, e.g. ["dev", "staging", "prod"]' })
  .min(1, { error: 'at least one environment name (omit the field for the default)' })
  .optional()
  .meta({
    description:
      'The order releases move through the environments: `promote` (and `release`) into an environment needs the release to have been active in the one before it, unless forced with a reason.',
    allowed: 'configured environment names, each at most once',
    unset: 'the environments in the order `environments` lists them',
  });

/** Per-environment `requireVerification`. */
export const requireVerificationSchema = z
  .boolean({ error: 'true or false' })
  .optional()
  .meta({
    description:
      'A promotion into this environment needs a passing `ops verify` of the release in the environment before it (in `promotionOrder`), unless forced with a reason.',
    unset: '`true` for an environment named `prod`, `false` otherwise',
  });

interface ReleaseConfigInput {
  readonly environments: readonly { readonly name: string; readonly requireVerification?: boolean }[];
  readonly promotionOrder?: readonly string[];
}

/** Cross-field rules: every name in `promotionOrder` is a configured environment, listed once. */
export function checkPromotionOrder(config: ReleaseConfigInput, ctx: z.RefinementCtx): void {
  if (config.promotionOrder === undefined) return;
  const names = new Set(config.environments.map((e) => e.name));
  const seen = new Set<string>();
  config.promotionOrder.forEach((name, i) => {
    if (!names.has(name)) {
      ctx.addIssue({ code: 'custom', path: ['promotionOrder', i], input: name, message: `a configured environment (${[...names].join(', ')})` });
    } else if (seen.has(name)) {
      ctx.addIssue({ code: 'custom', path: ['promotionOrder', i], input: name, message: 'a name not already listed in promotionOrder' });
    }
    seen.add(name);
  });
}

/** Fills the defaults: `promotionOrder` (the environments as listed) and each environment's `requireVerification`. */
export function withReleaseDefaults<T extends ReleaseConfigInput>(
  config: T,
): Omit<T, 'promotionOrder' | 'environments'> & {
  promotionOrder: string[];
  environments: (T['environments'][number] & { requireVerification: boolean })[];
} {
  return {
    ...config,
    promotionOrder: [...(config.promotionOrder ?? config.environments.map((e) => e.name))],
    environments: config.environments.map((e) => ({ ...e, requireVerification: e.requireVerification ?? e.name === 'prod' })),
  };
}

/** The environment a release must have been active in before it moves into `envName`; undefined for the first. */
export function previousEnvironment(promotionOrder: readonly string[], envName: string): string | undefined {
  const index = promotionOrder.indexOf(envName);
  return index > 0 ? promotionOrder[index - 1] : undefined;
}

/** True when `envName` is where releases start (the first of the order, or not in the order at all). */
export function isFirstEnvironment(promotionOrder: readonly string[], envName: string): boolean {
  return promotionOrder.indexOf(envName) <= 0;
}
