/**
 * `npm run chaos`: every chaos scenario (test/chaos/*.chaos.ts), one at a time, then the table in
 * docs/RELIABILITY.md. Not part of the default `npm test` run (jest.config.js), whose `chaos-fast`
 * project runs only test/chaos/*.fast.test.ts.
 * @type {import('jest').Config}
 */
const path = require('node:path');

module.exports = {
  rootDir: path.resolve(__dirname, '..', '..'),
  displayName: 'chaos',
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/test/tsconfig.json' }] },
  moduleNameMapper: {
    '^@baton/workflow$': '<rootDir>/workflow/src/index.ts',
    '^@baton/engine$': '<rootDir>/engine/src/index.ts',
    '^@baton/sdk$': '<rootDir>/sdk/src/index.ts',
  },
  modulePathIgnorePatterns: ['<rootDir>/.tools/', '<rootDir>/.dev/'],
  testEnvironment: 'node',
  testMatch: ['<rootDir>/test/chaos/**/*.chaos.ts'],
  testTimeout: 300_000,
  maxWorkers: 1,
};
