/**
 * The security policy holds for every stack this project synthesizes: the configured environments and
 * the variants a user can turn on (existing VPC, HTTPS, internal load balancer, every Redis topology, S3 backend).
 */
import { Testing } from 'cdktf';
import { parseConfig, type AppConfig } from '../../app/config';
import { checkTerraformPolicy, formatViolation, judgePolicy } from '../../app/policy';
import type { ArtifactRef } from '../../app/releases';
import { relayStackProps } from '../../app/synth';
import { RelayStack } from '../../stacks/relay-stack';
import { exampleConfig } from '../helpers/project';

const release: ArtifactRef = {
  label: 'relay-0.1.0-0123456789ab',
  sha256: '0123456789ab'.padEnd(64, '0'),
  md5: '0'.repeat(32),
  zipPath: '/nonexistent/relay-0.1.0-0123456789ab.zip',
};

function violationsOf(config: AppConfig): string {
  const lines: string[] = [];
  for (const env of config.environments) {
    const stack = new RelayStack(Testing.app(), `relay-${env.name}`, relayStackProps(config, env, { releases: [release], active: release }));
    const doc: unknown = JSON.parse(Testing.synth(stack));
    // An environment's waivers (its `insecure` reason among them) take a rule out, as in synth.
    lines.push(...judgePolicy(checkTerraformPolicy(doc), env.policyWaivers).failing.map((v) => formatViolation(stack.node.id, v)));
  }
  return lines.join('\n');
}

describe('security policy over synthesized stacks', () => {
  it('holds for the environments the repository ships with', () => {
    // GIVEN dev, staging and prod as shipped WHEN every stack is synthesized THEN no rule fires
    const config = parseConfig(exampleConfig(), 'example config');
    expect(config.environments.map((e) => e.name)).toEqual(['dev', 'staging', 'prod']);
    expect(violationsOf(config)).toBe('');
  });

  it('holds for the options a user can turn on', () => {
    const subnets = ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'];
    const config = parseConfig(
      {
        app: 'relay',
        environments: [
          {
            name: 'https',
            region: 'us-east-1',
            vpc: { vpcId: 'vpc-0123456789abcdef0', instanceSubnets: subnets, loadBalancerSubnets: subnets, redisSubnets: subnets },
            loadBalancer: {
              scheme: 'public',
              allowedCidrs: ['203.0.113.0/24'],
              certificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/01234567-89ab-cdef-0123-456789abcdef',
            },
            redis: { topology: 'replicated', replicas: 2 },
            backend: { type: 's3', bucket: 'relay-terraform-state' },
          },
          {
            name: 'internal',
            region: 'eu-central-1',
            loadBalancer: { scheme: 'internal', allowedCidrs: ['10.0.0.0/8'] },
            https: { domain: 'relay.internal.example.com', hostedZone: 'example.com' },
            redisEngine: 'valkey',
            redis: { topology: 'cluster', shards: 3, replicas: 1 },
          },
          { name: 'single', region: 'eu-west-1', redis: { topology: 'single' }, insecure: { reason: 'policy variant without a domain' } },
        ],
      },
      'policy variants',
    );
    expect(violationsOf(config)).toBe('');
  });
});
