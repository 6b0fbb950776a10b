import { Testing } from 'cdktf';
// Importing the adapter (not only calling Testing.setupJest) brings its matcher types into scope.
import { setupJest } from 'cdktf/lib/testing/adapters/jest';
import { S3BucketOwnershipControls } from '@cdktf/provider-aws/lib/s3-bucket-ownership-controls';
import { S3BucketPublicAccessBlock } from '@cdktf/provider-aws/lib/s3-bucket-public-access-block';
import { S3BucketServerSideEncryptionConfigurationA } from '@cdktf/provider-aws/lib/s3-bucket-server-side-encryption-configuration';
import { S3BucketVersioningA } from '@cdktf/provider-aws/lib/s3-bucket-versioning';
import { ArtifactStore, type ArtifactStoreProps } from '../../stacks/artifact-store';

setupJest();

type Body = Record<string, unknown>;
interface Synth {
  resource: Record<string, Record<string, Body>>;
  data: Record<string, Record<string, Body>>;
}
const release = (hex: string) => ({ label: `relay-0.1.0-${hex.repeat(12)}`, sha256: hex.repeat(64), md5: hex.repeat(32) });
const A = release('a');
const B = release('b');

function synth(props: Partial<ArtifactStoreProps> = {}): string {
  return Testing.synthScope((scope) => {
    new ArtifactStore(scope, 'artifacts', {
      namePrefix: 'relay-dev',
      releases: [A, B],
      retainReleases: 5,
      lifecycleRoleArn: 'arn:aws:iam::123456789012:role/relay-dev-eb-service',
      ...props,
    });
  });
}
const parse = (json: string) => JSON.parse(json) as Synth;

describe('ArtifactStore', () => {
  it('blocks public access, enforces bucket ownership, encrypts and versions the bucket', () => {
    const json = synth();
    expect(json).toHaveResourceWithProperties(S3BucketPublicAccessBlock, {
      block_public_acls: true,
      block_public_policy: true,
      ignore_public_acls: true,
      restrict_public_buckets: true,
    });
    expect(json).toHaveResourceWithProperties(S3BucketOwnershipControls, { rule: { object_ownership: 'BucketOwnerEnforced' } });
    expect(json).toHaveResourceWithProperties(S3BucketServerSideEncryptionConfigurationA, {
      rule: [{ apply_server_side_encryption_by_default: { sse_algorithm: 'AES256' } }],
    });
    expect(json).toHaveResourceWithProperties(S3BucketVersioningA, { versioning_configuration: { status: 'Enabled' } });
  });

  it('denies every request that is not TLS', () => {
    const doc = Object.values(parse(synth()).data.aws_iam_policy_document).find((d) => JSON.stringify(d).includes('DenyInsecureTransport')) as Body;
    expect(doc.statement).toEqual([
      expect.objectContaining({
        effect: 'Deny',
        actions: ['s3:*'],
        principals: [{ type: '*', identifiers: ['*'] }],
        condition: [{ test: 'Bool', variable: 'aws:SecureTransport', values: ['false'] }],
      }),
    ]);
  });

  it('lets the reader role download the zips and nothing else, only when one is given', () => {
    expect(parse(synth()).resource.aws_iam_role_policy).toBeUndefined();
    const s = parse(synth({ readerRole: 'relay-dev-eb-instance' }));
    const policies = Object.values(s.resource.aws_iam_role_policy);
    expect(policies).toHaveLength(1);
    expect(policies[0]).toMatchObject({ name: 'read-application-versions', role: 'relay-dev-eb-instance' });
    const doc = Object.values(s.data.aws_iam_policy_document).find((d) => JSON.stringify(d).includes('ReadApplicationVersions')) as Body;
    expect(doc.statement).toEqual([
      { sid: 'ReadApplicationVersions', effect: 'Allow', actions: ['s3:GetObject'], resources: [expect.stringMatching(/^\$\{aws_s3_bucket\.[^.]+\.arn\}\/versions\/\*$/)] },
    ]);
  });

  it('expires noncurrent object versions', () => {
    const lifecycle = Object.values(parse(synth()).resource.aws_s3_bucket_lifecycle_configuration)[0];
    expect(lifecycle.rule).toEqual([
      expect.objectContaining({ status: 'Enabled', noncurrent_version_expiration: [{ noncurrent_days: 30 }] }),
      expect.objectContaining({ status: 'Enabled', expiration: [{ expired_object_delete_marker: true }] }),
    ]);
  });

  it('names the bucket after the account, never a random id, unless a name is configured', () => {
    const bucket = Object.values(parse(synth()).resource.aws_s3_bucket)[0];
    expect(bucket.bucket).toMatch(/^relay-dev-artifacts-\$\{data\.aws_caller_identity\..*\.account_id\}$/);
    const named = Object.values(parse(synth({ bucketName: 'my-artifacts' })).resource.aws_s3_bucket)[0];
    expect(named.bucket).toBe('my-artifacts');
  });

  it('declares one content-addressed object and one application version per release', () => {
    const s = parse(synth());
    const objects = Object.values(s.resource.aws_s3_object);
    expect(objects.map((o) => [o.key, o.source, o.etag])).toEqual([
      [`versions/${A.label}.zip`, `releases/${A.label}.zip`, A.md5],
      [`versions/${B.label}.zip`, `releases/${B.label}.zip`, B.md5],
    ]);
    const versions = Object.values(s.resource.aws_elastic_beanstalk_application_version);
    expect(versions.map((v) => v.name)).toEqual([A.label, B.label]);
    for (const v of versions) expect(String(v.key)).toMatch(/^\$\{aws_s3_object\..*\.key\}$/);
    expect(JSON.stringify(s)).not.toMatch(/uuid|timestamp\(/);
  });

  it('keeps retainReleases versions through the lifecycle and never deletes their zips', () => {
    const app = Object.values(parse(synth({ retainReleases: 7 })).resource.aws_elastic_beanstalk_application)[0];
    expect(app.appversion_lifecycle).toEqual({
      service_role: 'arn:aws:iam::123456789012:role/relay-dev-eb-service',
      max_count: 7,
      delete_source_from_s3: false,
    });
  });
});
