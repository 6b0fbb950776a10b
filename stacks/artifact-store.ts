import { Construct } from 'constructs';
import { DataAwsCallerIdentity } from '@cdktf/provider-aws/lib/data-aws-caller-identity';
import { DataAwsIamPolicyDocument } from '@cdktf/provider-aws/lib/data-aws-iam-policy-document';
import { ElasticBeanstalkApplication } from '@cdktf/provider-aws/lib/elastic-beanstalk-application';
import { ElasticBeanstalkApplicationVersion } from '@cdktf/provider-aws/lib/elastic-beanstalk-application-version';
import { IamRolePolicy } from '@cdktf/provider-aws/lib/iam-role-policy';
import { S3Bucket } from '@cdktf/provider-aws/lib/s3-bucket';
import { S3BucketLifecycleConfiguration } from '@cdktf/provider-aws/lib/s3-bucket-lifecycle-configuration';
import { S3BucketOwnershipControls } from '@cdktf/provider-aws/lib/s3-bucket-ownership-controls';
import { S3BucketPolicy } from '@cdktf/provider-aws/lib/s3-bucket-policy';
import { S3BucketPublicAccessBlock } from '@cdktf/provider-aws/lib/s3-bucket-public-access-block';
import { S3BucketServerSideEncryptionConfigurationA } from '@cdktf/provider-aws/lib/s3-bucket-server-side-encryption-configuration';
import { S3BucketVersioningA } from '@cdktf/provider-aws/lib/s3-bucket-versioning';
import { S3Object } from '@cdktf/provider-aws/lib/s3-object';
import { RELEASE_KEY_PREFIX, releaseS3Key, releaseSourcePath } from './release-layout';

/** One application version the store declares: a built zip, named and checked by its content. */
export interface ApplicationRelease {
  /** Version label, `relay-<package version>-<first 12 hex of sha256>`; also names the zip. */
  readonly label: string;
  /** Hex SHA-256 of the zip, recorded in the application version's description. */
  readonly sha256: string;
  /** Hex MD5 of the zip: the S3 object's etag, so a changed zip is uploaded again. */
  readonly md5: string;
}

export interface ArtifactStoreProps {
  /** Prefix of every name, `<app>-<env>`. */
  readonly namePrefix: string;
  /**
   * Name of the artifact bucket.
   * @default `<app>-<env>-artifacts-<account id>`
   */
  readonly bucketName?: string;
  /**
   * Every retained release, oldest first; one S3 object and one application version each. Synth copies each zip to
   * `releaseSourcePath(label)` beside the stack.
   */
  readonly releases: readonly ApplicationRelease[];
  /** How many application versions Beanstalk keeps (the app-version lifecycle's max count). */
  readonly retainReleases: number;
  /** Role the app-version lifecycle runs as. */
  readonly lifecycleRoleArn: string;
  /**
   * Role (name or id) allowed to download the zips: the instance role, which fetches the version it deploys
   * (AWSElasticBeanstalkWebTier only covers buckets named elasticbeanstalk-*).
   * @default no role is granted access
   */
  readonly readerRole?: string;
  /**
   * Days a replaced object version is kept before S3 expires it.
   * @default 30
   */
  readonly noncurrentVersionDays?: number;
  /**
   * Let `terraform destroy` empty the bucket (every object version) first; off where releases must survive.
   * @default false
   */
  readonly forceDestroy?: boolean;
}

/** The artifact bucket, one content-addressed object + Beanstalk application version per release, and the application with its version lifecycle. */
export class ArtifactStore extends Construct {
  readonly bucket: S3Bucket;
  readonly application: ElasticBeanstalkApplication;
  /** Application versions by label. */
  readonly versions: ReadonlyMap<string, ElasticBeanstalkApplicationVersion>;

  constructor(scope: Construct, id: string, props: ArtifactStoreProps) {
    super(scope, id);
    const bucketName = props.bucketName ?? `${props.namePrefix}-artifacts-${new DataAwsCallerIdentity(this, 'account').accountId}`;
    this.bucket = new S3Bucket(this, 'bucket', { bucket: bucketName, forceDestroy: props.forceDestroy ?? false });
    new S3BucketPublicAccessBlock(this, 'public-access-block', {
      bucket: this.bucket.id,
      blockPublicAcls: true,
      blockPublicPolicy: true,
      ignorePublicAcls: true,
      restrictPublicBuckets: true,
    });
    new S3BucketOwnershipControls(this, 'ownership', {
      bucket: this.bucket.id,
      rule: { objectOwnership: 'BucketOwnerEnforced' },
    });
    // SSE-S3 rather than KMS: only then is an object's ETag the MD5 the objects declare as etag.
    new S3BucketServerSideEncryptionConfigurationA(this, 'encryption', {
      bucket: this.bucket.id,
      rule: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: 'AES256' } }],
    });
    new S3BucketVersioningA(this, 'versioning', {
      bucket: this.bucket.id,
      versioningConfiguration: { status: 'Enabled' },
    });
    new S3BucketLifecycleConfiguration(this, 'lifecycle', {
      bucket: this.bucket.id,
      rule: [
        {
          id: 'expire-noncurrent-versions',
          status: 'Enabled',
          filter: [{ prefix: '' }],
          noncurrentVersionExpiration: [{ noncurrentDays: props.noncurrentVersionDays ?? 30 }],
          abortIncompleteMultipartUpload: [{ daysAfterInitiation: 7 }],
        },
        {
          // A delete marker whose versions all expired only slows listings down.
          id: 'remove-expired-delete-markers',
          status: 'Enabled',
          filter: [{ prefix: '' }],
          expiration: [{ expiredObjectDeleteMarker: true }],
        },
      ],
    });
    const tlsOnly = new DataAwsIamPolicyDocument(this, 'tls-only-policy', {
      statement: [
        {
          sid: 'DenyInsecureTransport',
          effect: 'Deny',
          principals: [{ type: '*', identifiers: ['*'] }],
          actions: ['s3:*'],
          resources: [this.bucket.arn, `${this.bucket.arn}/*`],
          condition: [{ test: 'Bool', variable: 'aws:SecureTransport', values: ['false'] }],
        },
      ],
    });
    new S3BucketPolicy(this, 'policy', { bucket: this.bucket.id, policy: tlsOnly.json });

    if (props.readerRole !== undefined) {
      const read = new DataAwsIamPolicyDocument(this, 'read-versions-policy', {
        statement: [
          {
            sid: 'ReadApplicationVersions',
            effect: 'Allow',
            actions: ['s3:GetObject'],
            resources: [`${this.bucket.arn}/${RELEASE_KEY_PREFIX}*`],
          },
        ],
      });
      new IamRolePolicy(this, 'read-versions', { name: 'read-application-versions', role: props.readerRole, policy: read.json });
    }

    this.application = new ElasticBeanstalkApplication(this, 'application', {
      name: props.namePrefix,
      description: 'WebSocket relay',
      appversionLifecycle: {
        serviceRole: props.lifecycleRoleArn,
        maxCount: props.retainReleases,
        // The bucket's own lifecycle handles old bytes; a rollback must find its zip.
        deleteSourceFromS3: false,
      },
    });

    const versions = new Map<string, ElasticBeanstalkApplicationVersion>();
    for (const release of props.releases) {
      const object = new S3Object(this, `object-${release.label}`, {
        bucket: this.bucket.id,
        key: releaseS3Key(release.label),
        source: releaseSourcePath(release.label),
        etag: release.md5,
        contentType: 'application/zip',
      });
      versions.set(
        release.label,
        new ElasticBeanstalkApplicationVersion(this, `version-${release.label}`, {
          name: release.label,
          application: this.application.name,
          bucket: this.bucket.id,
          key: object.key,
          description: `sha256 ${release.sha256}`,
        }),
      );
    }
    this.versions = versions;
  }
}
