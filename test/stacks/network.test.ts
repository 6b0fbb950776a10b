import { Testing } from 'cdktf';
// Importing the adapter (not only calling Testing.setupJest) brings its matcher types into scope.
import { setupJest } from 'cdktf/lib/testing/adapters/jest';
import { DataAwsSubnets } from '@cdktf/provider-aws/lib/data-aws-subnets';
import { DataAwsVpc } from '@cdktf/provider-aws/lib/data-aws-vpc';
import { SecurityGroup } from '@cdktf/provider-aws/lib/security-group';
import { Network, type NetworkProps } from '../../stacks/network';

setupJest();

type Body = Record<string, unknown>;
function resources(json: string, type: string): Body[] {
  const parsed = JSON.parse(json) as { resource?: Record<string, Record<string, Body>> };
  return Object.values(parsed.resource?.[type] ?? {});
}
function synth(props: Partial<NetworkProps> = {}): string {
  return Testing.synthScope((scope) => {
    new Network(scope, 'network', { namePrefix: 'relay-dev', ...props });
  });
}
const ref = (s: unknown) => String(s);

describe('Network', () => {
  it('looks up the default VPC and its default subnets when no VPC is configured', () => {
    // GIVEN no vpc  WHEN synthesized
    const json = synth();
    // THEN
    expect(json).toHaveDataSourceWithProperties(DataAwsVpc, { default: true });
    expect(json).toHaveDataSourceWithProperties(DataAwsSubnets, {
      filter: [
        { name: 'vpc-id', values: ['${data.aws_vpc.network_vpc_4E8F0223.id}'] },
        { name: 'default-for-az', values: ['true'] },
      ],
    });
  });

  it('uses the configured VPC and subnets without a subnet lookup', () => {
    const json = synth({ vpc: { vpcId: 'vpc-0123456789abcdef0', instanceSubnets: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'] } });
    expect(json).toHaveDataSourceWithProperties(DataAwsVpc, { id: 'vpc-0123456789abcdef0' });
    expect(json).not.toHaveDataSource(DataAwsSubnets);
  });

  it('declares three security groups without inline rules', () => {
    const groups = resources(synth(), 'aws_security_group');
    expect(groups.map((g) => g.name).sort()).toEqual(['relay-dev-alb', 'relay-dev-instances', 'relay-dev-redis']);
    for (const g of groups) {
      expect(g.ingress).toBeUndefined();
      expect(g.egress).toBeUndefined();
    }
    expect(synth()).toHaveResource(SecurityGroup);
  });

  it('admits 6379 on Redis from the instance group only, 8080 on instances from the load balancer only', () => {
    const ingress = resources(synth(), 'aws_vpc_security_group_ingress_rule');
    const redis = ingress.filter((r) => ref(r.security_group_id).includes('redis-sg'));
    expect(redis).toHaveLength(1);
    expect(redis[0]).toMatchObject({ ip_protocol: 'tcp', from_port: 6379, to_port: 6379 });
    expect(ref(redis[0].referenced_security_group_id)).toContain('instance-sg');
    expect(redis[0].cidr_ipv4).toBeUndefined();

    const instance = ingress.filter((r) => ref(r.security_group_id).includes('instance-sg'));
    expect(instance.filter((r) => r.from_port === 8080)).toHaveLength(1);
    expect(instance.filter((r) => r.from_port === 9080)).toEqual([expect.objectContaining({ cidr_ipv4: expect.stringMatching(/^\$\{data\.aws_vpc\..*\.cidr_block\}$/) as unknown, to_port: 9080 })]);
    expect(instance[0]).toMatchObject({ ip_protocol: 'tcp', from_port: 8080, to_port: 8080 });
    expect(ref(instance[0].referenced_security_group_id)).toContain('load-balancer-sg');
  });

  it('opens only 80 (and 443 with HTTPS) to the world, and never SSH or RDP', () => {
    for (const https of [false, true]) {
      const ingress = resources(synth({ https }), 'aws_vpc_security_group_ingress_rule');
      const open = ingress.filter((r) => r.cidr_ipv4 === '0.0.0.0/0');
      expect(open.map((r) => r.from_port).sort()).toEqual(https ? [443, 80] : [80]);
      for (const r of open) expect(ref(r.security_group_id)).toContain('load-balancer-sg');
      for (const r of ingress) {
        expect(r.ip_protocol).toBe('tcp');
        expect([22, 3389]).not.toContain(r.from_port);
        expect(r.from_port).toBe(r.to_port);
      }
    }
  });

  it('limits the load balancer to the configured CIDRs', () => {
    const ingress = resources(synth({ allowedCidrs: ['203.0.113.0/24', '198.51.100.0/24'] }), 'aws_vpc_security_group_ingress_rule');
    const lb = ingress.filter((r) => ref(r.security_group_id).includes('load-balancer-sg'));
    expect(lb.map((r) => r.cidr_ipv4).sort()).toEqual(['198.51.100.0/24', '203.0.113.0/24']);
  });

  it('admits only the VPC CIDR to an internal load balancer by default', () => {
    const ingress = resources(synth({ loadBalancerScheme: 'internal' }), 'aws_vpc_security_group_ingress_rule');
    const lb = ingress.filter((r) => ref(r.security_group_id).includes('load-balancer-sg'));
    expect(lb).toHaveLength(1);
    expect(lb[0].cidr_ipv4).toMatch(/^\$\{data\.aws_vpc\..*\.cidr_block\}$/);
  });

  it('gives Redis no egress and the instances only HTTPS out plus Redis', () => {
    const egress = resources(synth(), 'aws_vpc_security_group_egress_rule');
    expect(egress.filter((r) => ref(r.security_group_id).includes('redis-sg'))).toHaveLength(0);
    const instance = egress.filter((r) => ref(r.security_group_id).includes('instance-sg'));
    expect(instance.map((r) => r.from_port).sort()).toEqual([443, 6379]);
    expect(egress.every((r) => r.ip_protocol === 'tcp')).toBe(true);
  });
});
