/**
 * Building blocks of the relay's environment schema (service/config.ts): the problem report, the field parsers that
 * say what is allowed, and the value checks they share.
 */
import { accessSync, constants, statSync } from 'node:fs';
import * as z from 'zod';

/** One invalid variable: its name, the value received and what is allowed. */
export interface ConfigProblem {
  readonly variable: string;
  readonly value: string | undefined;
  readonly allowed: string;
}

/** Every problem found in the environment, in one error. */
export class ConfigError extends Error {
  readonly code = 'invalid_config';
  constructor(readonly problems: readonly ConfigProblem[]) {
    super(
      `invalid relay configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}); fix these environment variables:\n` +
        problems
          .map((p) => `  - ${p.variable}=${p.value === undefined ? '(unset)' : JSON.stringify(p.value)}: ${p.allowed}`)
          .join('\n'),
    );
    this.name = 'ConfigError';
  }
}

/** An optional integer variable; the issue message is the allowed range, so every report says what fits. */
export function int(def: number, min: number, max: number) {
  const allowed = `expected an integer from ${min} to ${max} (default ${def})`;
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return def;
      const n = /^\d+$/.test(v) ? Number(v) : Number.NaN;
      if (!Number.isSafeInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: allowed });
        return z.NEVER;
      }
      return n;
    })
    .meta({ allowed: `an integer from ${min} to ${max}` });
}

export function oneOf<T extends string>(values: readonly T[], def: T) {
  const allowed = `expected one of ${values.join(', ')} (default ${def})`;
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return def;
      if (!(values as readonly string[]).includes(v)) {
        ctx.addIssue({ code: 'custom', message: allowed });
        return z.NEVER;
      }
      return v as T;
    })
    .meta({ allowed: values.map((v) => `\`${v}\``).join(', ') });
}

/** An optional comma-separated list; each entry trimmed, empty entries dropped, every entry checked. */
export function list(isValid: (entry: string) => boolean, allowed: string, badLabel = 'not valid', unsetNote = '') {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return null;
      const entries = v
        .split(',')
        .map((e) => e.trim())
        .filter((e) => e.length > 0);
      const bad = entries.filter((e) => !isValid(e));
      if (entries.length === 0 || bad.length > 0) {
        ctx.addIssue({ code: 'custom', message: `${allowed}${bad.length > 0 ? `; ${badLabel}: ${bad.join(', ')}` : ''}${unsetNote}` });
        return z.NEVER;
      }
      return entries;
    });
}

const API_KEY_RE = /^[\x21-\x2b\x2d-\x7e]{32,512}$/;

/**
 * RELAY_API_KEY: one key, or two separated by a comma (a rotation). Problems name a key by its position and length,
 * never by its value.
 */
export function apiKeys() {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return null;
      const keys = v.split(',').map((k) => k.trim());
      const problems = keys.flatMap((k, i) =>
        API_KEY_RE.test(k) ? [] : [`key ${i + 1} has ${k.length} characters${/[^\x21-\x7e]/.test(k) ? ' and spaces or control characters' : ''}`],
      );
      if (keys.length > 2) problems.unshift(`${keys.length} keys given, at most 2 are accepted (the current key and the next one)`);
      if (problems.length > 0) {
        ctx.addIssue({
          code: 'custom',
          message: `expected one or two keys of 32-512 printable characters (no spaces or commas), separated by a comma; ${problems.join('; ')}`,
        });
        return z.NEVER;
      }
      return keys;
    });
}

export function matching(re: RegExp, allowed: string) {
  return z
    .string()
    .optional()
    .refine((v) => v === undefined || re.test(v), { message: allowed });
}

export function isRedisUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === 'redis:' || u.protocol === 'rediss:') && u.hostname.length > 0;
  } catch {
    return false;
  }
}

export function isExactOrigin(v: string): boolean {
  try {
    return new URL(v).origin === v;
  } catch {
    return false;
  }
}

export function isReadableFile(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
