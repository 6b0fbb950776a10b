import { localReleaseZip, RELEASE_KEY_PREFIX, releaseS3Key, releaseSourcePath } from '../../stacks/release-layout';

const LABEL = 'relay-0.1.0-0123456789ab';

describe('release layout', () => {
  it('keys every zip under versions/ in the bucket, the prefix the instances may read', () => {
    expect(releaseS3Key(LABEL)).toBe('versions/relay-0.1.0-0123456789ab.zip');
    expect(releaseS3Key(LABEL).startsWith(RELEASE_KEY_PREFIX)).toBe(true);
  });

  it('places the zip beside the stack with a relative path, and on the build machine in the artifacts folder', () => {
    expect(releaseSourcePath(LABEL)).toBe('releases/relay-0.1.0-0123456789ab.zip');
    expect(localReleaseZip('/work/dist/artifacts', LABEL)).toBe('/work/dist/artifacts/relay-0.1.0-0123456789ab.zip');
  });
});
