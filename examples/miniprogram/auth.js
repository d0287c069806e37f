// The app's one wxauth client; pages require this module rather than making their own.
const { createClient } = require('wxauth-miniprogram');
const config = require('./config');

let devLogins = 0;

module.exports = createClient({
  baseUrl: config.baseUrl,
  // A new code each time (`#n`), so every login is a fresh one for the same user.
  getCode: config.devUser
    ? () => {
        devLogins += 1;
        return 'dev:' + config.devUser + '#' + Date.now() + '-' + devLogins;
      }
    : undefined,
});
