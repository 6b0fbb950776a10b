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
  forceExit: false,
  verbose: false,
};
