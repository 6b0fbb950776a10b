/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // Type errors are `npm run typecheck`'s job (it runs first in `npm test`); here ts-jest only transpiles, which is faster.
  transform: {
    '^.+\\.ts$': ['ts-jest', { diagnostics: false }],
    // jose ships ES modules only; jest (before Node 24.9) cannot require them, so its files are compiled to CommonJS too.
    '/node_modules/jose/.+\\.js$': ['ts-jest', { diagnostics: false, tsconfig: { allowJs: true } }],
  },
  transformIgnorePatterns: ['/node_modules/(?!jose/)'],
  globalSetup: '<rootDir>/test/global-setup.ts',
  testTimeout: 60000,
  maxWorkers: 2,
  // After its last file a worker needs ~100 ms of CPU to tear down (its event loop already empty). On a loaded 2-core
  // machine that took 600-720 ms, past jest's 500 ms default, and jest force-exited it as if a test had leaked a handle.
  // A worker that really keeps a handle open is still force-exited, with the same warning, after this.
  workerGracefulExitTimeout: 5000,
  forceExit: false,
  verbose: false,
};
