import { Fn } from 'cdktf';
import { Construct } from 'constructs';
import { AcmCertificate } from '@cdktf/provider-aws/lib/acm-certificate';
import { AcmCertificateValidation } from '@cdktf/provider-aws/lib/acm-certificate-validation';
import { DataAwsRoute53Zone } from '@cdktf/provider-aws/lib/data-aws-route53-zone';
import { Route53Record } from '@cdktf/provider-aws/lib/route53-record';

/** HTTPS with an existing certificate, or a domain in a Route 53 zone for which the stack creates one. */
export type RelayHttpsProps = { readonly certificateArn: string } | { readonly domain: string; readonly hostedZone: string };

/** The certificate the HTTPS listener uses; with a domain, the certificate is created and validated through DNS. */
export class RelayCertificate extends Construct {
  /** ARN for the listener; with a domain, it resolves only once validation succeeded, so the listener waits for it. */
  readonly certificateArn: string;
  /** The hosted zone of the domain, for the alias record. */
  readonly zoneId?: string;
  readonly domain?: string;

  constructor(scope: Construct, id: string, props: RelayHttpsProps) {
    super(scope, id);
    if ('certificateArn' in props) {
      this.certificateArn = props.certificateArn;
      return;
    }
    const zone = new DataAwsRoute53Zone(this, 'zone', { name: props.hostedZone, privateZone: false });
    const certificate = new AcmCertificate(this, 'certificate', {
      domainName: props.domain,
      validationMethod: 'DNS',
      lifecycle: { createBeforeDestroy: true },
    });
    const option = certificate.domainValidationOptions.get(0);
    const record = new Route53Record(this, 'validation-record', {
      zoneId: zone.zoneId,
      name: option.resourceRecordName,
      type: option.resourceRecordType,
      records: [option.resourceRecordValue],
      ttl: 300,
      allowOverwrite: true,
    });
    const validation = new AcmCertificateValidation(this, 'validation', {
      certificateArn: certificate.arn,
      validationRecordFqdns: [record.fqdn],
    });
    this.certificateArn = validation.certificateArn;
    this.zoneId = zone.zoneId;
    this.domain = props.domain;
  }

  /** Points the domain at the load balancer (an alias A record); nothing with an existing certificate. */
  aliasTo(loadBalancerDnsName: string, loadBalancerZoneId: string): void {
    if (this.zoneId === undefined || this.domain === undefined) return;
    new Route53Record(this, 'alias', {
      zoneId: this.zoneId,
      name: this.domain,
      type: 'A',
      alias: { name: Fn.lower(loadBalancerDnsName), zoneId: loadBalancerZoneId, evaluateTargetHealth: true },
    });
  }
}
