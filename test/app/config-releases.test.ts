import { parseConfig } from '../../app/config';
import { previousEnvironment } from '../../app/config-releases';

const env = (name: string) => ({ name, region: 'eu-west-1' });

describe('promotionOrder', () => {
  it('defaults to the environments in the order they are listed, and requireVerification to prod only', () => {
    const config = parseConfig({ environments: ['dev', 'staging', 'prod'].map(env) });
    expect(config.promotionOrder).toEqual(['dev', 'staging', 'prod']);
    expect(config.environments.map((e) => e.requireVerification)).toEqual([false, false, true]);
    expect(previousEnvironment(config.promotionOrder, 'prod')).toBe('staging');
    expect(previousEnvironment(config.promotionOrder, 'dev')).toBeUndefined();
  });

  it('takes a configured order and per-environment switches', () => {
    const config = parseConfig({ environments: [env('prod'), { ...env('qa'), requireVerification: true }, env('dev')], promotionOrder: ['dev', 'qa', 'prod'] });
    expect(config.promotionOrder).toEqual(['dev', 'qa', 'prod']);
    expect(config.environments.map((e) => [e.name, e.requireVerification])).toEqual([['prod', true], ['qa', true], ['dev', false]]);
  });

  it('fails when it names an environment that is not configured, or one twice', () => {
    expect(() => parseConfig({ environments: ['dev', 'prod'].map(env), promotionOrder: ['dev', 'prdo', 'dev'] }, 'relay.config.json')).toThrow(
      'Invalid relay config in relay.config.json (2 problems); fix these and run synth again:\n' +
        '  - promotionOrder[1]: received "prdo"; allowed: a configured environment (dev, prod)\n' +
        '  - promotionOrder[2]: received "dev"; allowed: a name not already listed in promotionOrder',
    );
  });

  it('fails on an environment name a ledger file could not carry', () => {
    expect(() => parseConfig({ environments: [env('Prod')] })).toThrow(/environments\[0\]\.name: received "Prod"; allowed: a DNS-safe name/);
  });
});
