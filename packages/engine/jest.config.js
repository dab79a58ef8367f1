const path = require('node:path');
// onnxruntime-node needs the host realm's typed arrays (see jest.environment.js).
module.exports = { ...require('../../jest.preset.js')(__dirname), testEnvironment: path.join(__dirname, 'jest.environment.js') };
