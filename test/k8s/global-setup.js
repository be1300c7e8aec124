// Fetches helm and kubectl once per jest run (a no-op when .tools/bin already has them).
const { ensureTools } = require('../../scripts/fetch-tools');

module.exports = async function globalSetup() {
  ensureTools();
};
