import { existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { bundleService } from '../app/bundle';
import { REPO_ROOT } from '../app/paths';

/** Folder holding the bundled relay that process-level tests start with `node server.js`. */
export const TEST_BUILD_DIR = join(REPO_ROOT, '.build', 'test-relay');

// One bundle per test run: every relay process in the suite runs exactly the code that ships.
export default async function globalSetup(): Promise<void> {
  // Synth under CI=true refuses local backends; the suite's throwaway projects use them, and the tests of that rule set CI.
  delete process.env.CI;
  // Build beside the target and swap it in, so a concurrent run never sees a half-written folder.
  const fresh = `${TEST_BUILD_DIR}.${process.pid}`;
  const stale = `${TEST_BUILD_DIR}.${process.pid}.old`;
  await bundleService(fresh);
  if (existsSync(TEST_BUILD_DIR)) renameSync(TEST_BUILD_DIR, stale);
  renameSync(fresh, TEST_BUILD_DIR);
  rmSync(stale, { recursive: true, force: true });
}
