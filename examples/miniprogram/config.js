// Where the example finds wxauth. For `wxauth serve --dev` on the computer that runs
// WeChat DevTools, keep the defaults (project.config.json turns off DevTools' domain
// check, so plain http to 127.0.0.1 is allowed there).
module.exports = {
  baseUrl: 'http://127.0.0.1:8080',
  // In dev mode, log in as this fake WeChat user: `dev:alice` is the same user on every
  // launch. Set it to '' to send real wx.login codes, which the dev server turns into a
  // new user for every code. Against a production server it must be ''.
  devUser: 'alice',
};
