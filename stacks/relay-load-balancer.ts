import { Fn, Token } from 'cdktf';
import { Construct } from 'constructs';
import { DataAwsLb } from '@cdktf/provider-aws/lib/data-aws-lb';
import { DataAwsLbListener } from '@cdktf/provider-aws/lib/data-aws-lb-listener';
import { DataAwsLbTargetGroup } from '@cdktf/provider-aws/lib/data-aws-lb-target-group';
import { LbListenerRule } from '@cdktf/provider-aws/lib/lb-listener-rule';
import type { ElasticBeanstalkEnvironment } from '@cdktf/provider-aws/lib/elastic-beanstalk-environment';

export interface EnvironmentLoadBalancerProps {
  readonly environment: ElasticBeanstalkEnvironment;
  /** Redirect every request on :80 to HTTPS. */
  readonly redirectHttp: boolean;
}

/**
 * The application load balancer Beanstalk created, read back for what Beanstalk's options cannot express: the :80
 * redirect to HTTPS (a listener rule), the alias record and the alarms' dimensions.
 */
export class EnvironmentLoadBalancer extends Construct {
  readonly dnsName: string;
  readonly zoneId: string;
  /** `app/<name>/<id>`: the LoadBalancer dimension of AWS/ApplicationELB metrics. */
  readonly arnSuffix: string;
  /** `targetgroup/<name>/<id>`: the TargetGroup dimension. */
  readonly targetGroupArnSuffix: string;

  constructor(scope: Construct, id: string, props: EnvironmentLoadBalancerProps) {
    super(scope, id);
    // For an application load balancer Beanstalk reports the load balancer's ARN.
    const lb = new DataAwsLb(this, 'load-balancer', { arn: Token.asString(Fn.element(props.environment.loadBalancers, 0)) });
    const http = new DataAwsLbListener(this, 'http-listener', { loadBalancerArn: lb.arn, port: 80 });
    const targetGroup = new DataAwsLbTargetGroup(this, 'target-group', { arn: http.defaultAction.get(0).targetGroupArn });
    if (props.redirectHttp) {
      new LbListenerRule(this, 'http-to-https', {
        listenerArn: http.arn,
        priority: 1,
        action: [{ type: 'redirect', redirect: { protocol: 'HTTPS', port: '443', statusCode: 'HTTP_301' } }],
        condition: [{ pathPattern: { values: ['/*'] } }],
      });
    }
    this.dnsName = lb.dnsName;
    this.zoneId = lb.zoneId;
    this.arnSuffix = lb.arnSuffix;
    this.targetGroupArnSuffix = targetGroup.arnSuffix;
  }
}
