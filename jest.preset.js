// Shared jest settings for every package: ts-jest (type-checked), node environment.
// Tests read real fixtures from ../shared; slow model tests set their own timeouts.
const path = require('node:path');

// nx runs each package's jest in that package's folder; a relative HARMOQ_DATA/HARMOQ_GOLDEN means
// relative to where the user typed `npm test` (npm's INIT_CWD), so pin it before any test reads it.
for (const name of ['HARMOQ_DATA', 'HARMOQ_GOLDEN']) {
  const value = process.env[name];
  if (value && !path.isAbsolute(value)) process.env[name] = path.resolve(process.env.INIT_CWD || process.cwd(), value);
}
module.exports = (dir) => ({
  displayName: path.basename(dir),
  rootDir: dir,
  // onnxruntime-node checks typed arrays against the host realm's constructors (see jest.environment.js).
  testEnvironment: path.join(__dirname, 'jest.environment.js'),
  testMatch: ['<rootDir>/src/**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: path.join(__dirname, 'tsconfig.base.json') }] },
  moduleNameMapper: {
    '^@harmoq/([a-z-]+)$': path.join(__dirname, 'packages/$1/src/index.ts'),
  },
  testTimeout: 120000,
});
