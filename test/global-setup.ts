import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { bundleService, REPO_ROOT } from '../app/bundle';

/** Folder holding the bundled relay that process-level tests start with `node server.js`. */
export const TEST_BUILD_DIR = join(REPO_ROOT, '.build', 'test-relay');

// One bundle per test run: every relay process in the suite runs exactly the code that ships.
export default async function globalSetup(): Promise<void> {
  // Only while the service entry point is being written; the bundle is required as soon as it exists.
  if (!existsSync(join(REPO_ROOT, 'service', 'main.ts'))) return;
  await bundleService(TEST_BUILD_DIR);
}
