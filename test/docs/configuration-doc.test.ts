import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import {
  CONFIGURATION_DOC,
  MissingDescriptionError,
  renderConfigTables,
  renderConfigurationDoc,
  renderEnvTable,
} from '../../docs/generate-configuration';

describe('docs/configuration.md', () => {
  it('documents every environment variable and config field', () => {
    // Throws MissingDescriptionError naming each field without a description, and how to add one.
    expect(() => renderConfigurationDoc()).not.toThrow();
  });

  it('is what the schemas generate', () => {
    const expected = renderConfigurationDoc();
    const actual = readFileSync(CONFIGURATION_DOC, 'utf8');
    if (actual !== expected) {
      const a = actual.split('\n');
      const e = expected.split('\n');
      const differs = e.findIndex((l, i) => l !== a[i]);
      const line = differs < 0 ? e.length : differs;
      throw new Error(
        'docs/configuration.md is stale: the schemas in service/config.ts or app/config.ts changed. ' +
          'Run `npm run docs:config` and commit the result.\n' +
          `First difference at line ${line + 1}:\n  generated: ${e[line] ?? '(end of file)'}\n  committed: ${a[line] ?? '(end of file)'}`,
      );
    }
  });
});

describe('the configuration reference generator', () => {
  it('fails when an environment variable has no description, naming it', () => {
    const schema = z.object({
      DOCUMENTED: z.string().optional().meta({ description: 'Has one.' }),
      NEW_VARIABLE: z.string().optional(),
    });
    expect(() => renderEnvTable(schema, 'service/config.ts')).toThrow(MissingDescriptionError);
    expect(() => renderEnvTable(schema, 'service/config.ts')).toThrow(
      "1 configuration field has no description:\n  - service/config.ts: NEW_VARIABLE\nAdd `.meta({ description: '…' })` to each field's schema, then run `npm run docs:config`.",
    );
  });

  it('fails when a nested config field has no description, naming its path', () => {
    const schema = z.object({
      environments: z
        .array(z.object({ name: z.string().meta({ description: 'Name.' }), waivers: z.array(z.object({ rule: z.string() })).meta({ description: 'W.' }) }))
        .meta({ description: 'Envs.' }),
    });
    expect(() => renderConfigTables(schema, 'app/config.ts')).toThrow('app/config.ts: environments[].waivers[].rule');
  });

  it('derives defaults and allowed values from the schema', () => {
    const env = renderEnvTable(
      z.object({ LEVEL: z.enum(['a', 'b']).optional().default('b').meta({ description: 'Level.', allowed: '`a`, `b`' }) }),
      'x',
    );
    expect(env).toContain('| `LEVEL` | `b` | `a`, `b` | Level. |');
    const config = renderConfigTables(z.object({ port: z.int().min(1).max(9).default(3).meta({ description: 'Port.' }) }), 'x');
    expect(config).toContain('| `port` | integer | `3` | 1-9 | Port. |');
  });
});
