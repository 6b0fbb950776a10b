// The synth benchmark's baseline: the smallest useful cdktf app (one provider, one bucket) with a deep import.
import { App, TerraformStack } from 'cdktf';
import { AwsProvider } from '@cdktf/provider-aws/lib/provider';
import { S3Bucket } from '@cdktf/provider-aws/lib/s3-bucket';

const app = new App({ outdir: process.env.BENCH_SYNTH_OUTDIR ?? 'cdktf.out' });
const stack = new TerraformStack(app, 'one-resource');
new AwsProvider(stack, 'aws', { region: 'eu-west-1' });
new S3Bucket(stack, 'bucket', { bucketPrefix: 'one-resource-' });
app.synth();
