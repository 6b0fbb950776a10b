/**
 * The relay's embedded-metric-format (EMF) file on each instance and how it reaches CloudWatch: the artifact carries an
 * `.ebextensions` file that hands the CloudWatch agent a `logs` section for the file, and the stack owns the log group
 * it streams into (retention set here: the instance role may write to it but not create it or set its retention).
 * The artifact (app/artifact.ts) and the stack read the same names from this file.
 */
import { Construct } from 'constructs';
import { CloudwatchLogGroup } from '@cdktf/provider-aws/lib/cloudwatch-log-group';

/** Where the relay appends its EMF lines (RELAY_EMF_FILE on Beanstalk). */
export const EMF_LOG_FILE = '/var/log/relay/metrics.log';
/** Owner of the EMF file's folder: the user the AL2023 Node.js platform runs the Procfile's process as. */
export const APP_USER = 'webapp';
/** The agent configuration the `.ebextensions` file writes and appends to the agent's running configuration. */
export const METRICS_AGENT_CONFIG = '/opt/aws/amazon-cloudwatch-agent/etc/relay-metrics.json';
/** The agent's control script (installed on Beanstalk's Amazon Linux 2 and 2023 platforms). */
export const AGENT_CTL = '/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl';
/** Path of the `.ebextensions` file inside the source bundle. */
export const METRICS_EBEXTENSION_PATH = '.ebextensions/relay-metrics.config';
/**
 * Elastic Beanstalk's inline function for the environment's name, replaced when the configuration file is applied
 * (the same form as AWS's own log-streaming sample): one artifact serves every environment.
 */
export const ENVIRONMENT_NAME_REF = '`{"Ref":"AWSEBEnvironmentName"}`';
const PLACEHOLDER = '@ENVIRONMENT_NAME@';

/**
 * Log group of an environment's EMF lines. Under `/aws/elasticbeanstalk`, where AWSElasticBeanstalkWebTier lets the
 * instances create streams and put events.
 */
export function metricsLogGroupName(environmentName: string): string {
  return `/aws/elasticbeanstalk/${environmentName}${EMF_LOG_FILE}`;
}

/** The CloudWatch agent's configuration for the EMF file, for the environment named `environmentName`. */
export function metricsAgentConfig(environmentName: string): Record<string, unknown> {
  return {
    logs: {
      logs_collected: {
        files: {
          collect_list: [
            {
              file_path: EMF_LOG_FILE,
              log_group_name: metricsLogGroupName(environmentName),
              // One stream per instance: each line is one EMF document, extracted as it arrives.
              log_stream_name: '{instance_id}',
            },
          ],
        },
      },
    },
  };
}

/**
 * The `.ebextensions` configuration file (JSON, one of the two formats Beanstalk reads): the agent configuration with
 * the environment's name left to Beanstalk, the EMF folder owned by the app user, and the configuration appended to
 * the agent Beanstalk already runs for log streaming. Commands run on every deploy; both are idempotent.
 */
export function metricsEbextension(): string {
  const config = {
    files: {
      [METRICS_AGENT_CONFIG]: {
        mode: '000644',
        owner: 'root',
        group: 'root',
        // Built with a placeholder, then given the inline function verbatim: JSON escaping would break its quotes.
        content: `${JSON.stringify(metricsAgentConfig(PLACEHOLDER), null, 2).replace(PLACEHOLDER, ENVIRONMENT_NAME_REF)}\n`,
      },
    },
    commands: {
      '01-relay-metrics-folder': { command: `install -d -m 0755 -o ${APP_USER} -g ${APP_USER} ${EMF_LOG_FILE.slice(0, EMF_LOG_FILE.lastIndexOf('/'))}` },
      '02-relay-metrics-agent': { command: `${AGENT_CTL} -a append-config -m ec2 -s -c file:${METRICS_AGENT_CONFIG}` },
    },
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

export interface RelayMetricsLogProps {
  /** Beanstalk environment name, `<app>-<env>`. */
  readonly environmentName: string;
  /** Days CloudWatch keeps the lines (the metrics extracted from them are kept by CloudWatch metrics' own rules). */
  readonly retentionDays: number;
}

/** The log group the CloudWatch agent streams the EMF file into; CloudWatch extracts the relay's metrics from it. */
export class RelayMetricsLog extends Construct {
  readonly logGroup: CloudwatchLogGroup;

  constructor(scope: Construct, id: string, props: RelayMetricsLogProps) {
    super(scope, id);
    this.logGroup = new CloudwatchLogGroup(this, 'log-group', {
      name: metricsLogGroupName(props.environmentName),
      retentionInDays: props.retentionDays,
    });
  }
}
