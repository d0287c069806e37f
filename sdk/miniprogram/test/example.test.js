'use strict';
// The example mini program (examples/miniprogram) driven against a real
// `wxauth serve --dev`: its App and Page run with a stand-in for the framework (App,
// Page, setData) and the Node `wx`, and its handlers are called as taps would call them.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const vm = require('node:vm');

const { createNodeWx } = require('./support/node-wx');
const { makePng } = require('./support/png');
const { wxauthBinary, startDevServer, REPO } = require('./support/wxauth-server');

const EXAMPLE = path.join(REPO, 'examples', 'miniprogram');
const SDK = path.join(__dirname, '..', 'index.js');

const bin = wxauthBinary();
const skip = bin ? false : 'no wxauth binary: run `cargo build` first, or set TEST_WXAUTH_BIN to one';

let server;
let scratch;

test.before(async () => {
  if (skip) return;
  server = await startDevServer(bin);
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'wxauth-sdk-example-'));
});

test.after(async () => {
  if (server) await server.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

/**
 * Loads the example as the mini program runtime would: every file a CommonJS module
 * with `wx`, `App`, `Page` and `getApp` as globals, `wxauth-miniprogram` resolved to
 * the SDK (what "build npm" does) and config.js replaced by `config`.
 */
function loadExample(wx, config) {
  const modules = new Map();
  let app;
  let page;
  const globals = {
    wx: wx,
    App: (definition) => {
      app = definition;
    },
    Page: (definition) => {
      page = definition;
    },
    getApp: () => app,
  };
  const names = Object.keys(globals);

  function load(file) {
    if (file === path.join(EXAMPLE, 'config.js')) return config;
    if (modules.has(file)) return modules.get(file).exports;
    const module = { exports: {} };
    modules.set(file, module);
    const source = fs.readFileSync(file, 'utf8');
    const wrapped = `(function (require, module, exports, ${names.join(', ')}) {${source}\n})`;
    const run = new vm.Script(wrapped, { filename: file }).runInThisContext();
    const require = (name) =>
      name === 'wxauth-miniprogram'
        ? load(SDK)
        : load(path.resolve(path.dirname(file), name.endsWith('.js') ? name : name + '.js'));
    run.apply(null, [require, module, module.exports].concat(names.map((n) => globals[n])));
    return module.exports;
  }

  load(path.join(EXAMPLE, 'app.js'));
  load(path.join(EXAMPLE, 'pages', 'index', 'index.js'));
  app.onLaunch();
  const instance = Object.assign({}, page, {
    data: JSON.parse(JSON.stringify(page.data)),
    setData(patch) {
      Object.assign(this.data, patch);
    },
  });
  return { app, page: instance, definition: page };
}

test('every handler the page template binds exists on the page', { skip }, () => {
  const wxml = fs.readFileSync(path.join(EXAMPLE, 'pages', 'index', 'index.wxml'), 'utf8');
  const bound = Array.from(wxml.matchAll(/\bbind:?[a-z]+="(\w+)"/g), (m) => m[1]);
  assert.ok(bound.length >= 6);
  const { definition } = loadExample(createNodeWx('x'), { baseUrl: server.baseUrl, devUser: 'x' });
  for (const name of bound) assert.equal(typeof definition[name], 'function', name);
  for (const file of ['index.js', 'index.json', 'index.wxml', 'index.wxss']) {
    assert.ok(fs.existsSync(path.join(EXAMPLE, 'pages', 'index', file)), file);
  }
  const appJson = JSON.parse(fs.readFileSync(path.join(EXAMPLE, 'app.json'), 'utf8'));
  assert.deepEqual(appJson.pages, ['pages/index/index']);
});

test('the example logs in silently, edits the profile, binds a phone and logs out', { skip }, async () => {
  const wx = createNodeWx('unused');
  const { page } = loadExample(wx, { baseUrl: server.baseUrl, devUser: 'grace' });

  await page.onLoad();
  assert.equal(page.data.error, '');
  assert.equal(page.data.loading, false);
  const id = page.data.user.id;
  assert.match(id, /^u_/);
  assert.equal(wx.loginCalls, 0, 'dev mode codes come from config.devUser, not wx.login');
  assert.equal(wx.count('POST /v1/login'), 1);

  await page.onSaveNickname({ detail: { value: { nickname: '  Grace 🦉 ' } } });
  assert.equal(page.data.error, '');
  assert.equal(page.data.user.nickname, 'Grace 🦉');

  const file = path.join(scratch, 'chosen.png');
  fs.writeFileSync(file, makePng(8));
  await page.onChooseAvatar({ detail: { avatarUrl: file } });
  assert.equal(page.data.error, '');
  assert.ok(page.data.avatarSrc.startsWith(server.baseUrl + '/v1/avatars/'), page.data.avatarSrc);

  await page.onGetPhoneNumber({ detail: { errMsg: 'getPhoneNumber:fail user deny' } });
  assert.match(page.data.error, /user deny/);
  assert.equal(wx.count('POST /v1/me/phone'), 0);

  await page.onFakePhone();
  assert.equal(page.data.error, '');
  assert.match(page.data.user.phone, /^1\d{10}$/);

  await page.onLogout();
  assert.equal(page.data.user, null);
  assert.equal(wx.storage.has('wxauth'), false);

  await page.onLogin();
  assert.equal(page.data.user.id, id);
  assert.equal(page.data.user.nickname, 'Grace 🦉');
  assert.equal(wx.count('POST /v1/login'), 2);
  page.onUnload();
});

test('without a dev user the example logs in with wx.login codes', { skip }, async () => {
  const wx = createNodeWx('heidi');
  const { page } = loadExample(wx, { baseUrl: server.baseUrl, devUser: '' });
  await page.onLoad();
  assert.equal(page.data.error, '');
  assert.match(page.data.user.id, /^u_/);
  assert.equal(wx.loginCalls, 1);
  page.onUnload();
});
