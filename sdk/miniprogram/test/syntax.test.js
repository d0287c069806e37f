'use strict';
// The module must run in WeChat's base library as it is, without DevTools' "ES6 to ES5"
// step: CommonJS, ES2015 syntax, and no Node globals. Its declarations must name what it
// exports.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

const ROOT = path.join(__dirname, '..');
const SOURCE = fs.readFileSync(path.join(ROOT, 'index.js'), 'utf8');
const DECLARATIONS = fs.readFileSync(path.join(ROOT, 'index.d.ts'), 'utf8');
const EXAMPLE = path.join(ROOT, '..', '..', 'examples', 'miniprogram');

test('the module, and the example that turns "ES6 to ES5" off, use no syntax newer than ES2015', () => {
  const files = ['app.js', 'auth.js', 'config.js', path.join('pages', 'index', 'index.js')].map(
    (f) => path.join(EXAMPLE, f)
  );
  const sources = [['index.js', SOURCE]].concat(files.map((f) => [f, fs.readFileSync(f, 'utf8')]));
  const forbidden = [
    ['optional chaining', /\?\./],
    ['nullish coalescing', /\?\?/],
    ['spread or rest', /\.\.\./],
    ['exponent operator', /\*\*/],
    ['async functions', /\basync\b/],
    ['await', /\bawait\b/],
    ['ES module import', /^\s*import[\s{*]/m],
    ['ES module export', /^\s*export\s/m],
    ['dynamic import', /\bimport\s*\(/],
  ];
  for (const [file, source] of sources) {
    for (const [what, pattern] of forbidden) {
      assert.doesNotMatch(source, pattern, what + ' found in ' + file);
    }
  }
  const config = JSON.parse(fs.readFileSync(path.join(EXAMPLE, 'project.config.json'), 'utf8'));
  assert.equal(config.setting.es6, false);
});

test('the module parses as a CommonJS function body', () => {
  const wrapped = '(function (exports, require, module, __filename, __dirname) {' + SOURCE + '\n})';
  assert.doesNotThrow(() => new vm.Script(wrapped, { filename: 'index.js' }));
});

test('the module loads and works with only what a mini program has', async () => {
  // No process, Buffer, URL, require or setImmediate: just the language, timers,
  // console and wx.
  const module = { exports: {} };
  const storage = {};
  const wx = {
    login(o) {
      setTimeout(() => o.success({ code: 'c1' }), 0);
    },
    request(o) {
      setTimeout(() => {
        if (o.url.endsWith('/v1/login')) {
          o.success({
            statusCode: 200,
            header: {},
            data: { token: 't1', token_type: 'Bearer', expires_in: 60, expires_at: '', new_user: true, user: { id: 'u_1' } },
          });
        } else {
          o.success({ statusCode: 200, header: {}, data: { id: 'u_1', seen: o.header.Authorization } });
        }
      }, 0);
    },
    uploadFile() {},
    getStorageSync: (k) => (k in storage ? storage[k] : ''),
    setStorageSync: (k, v) => {
      storage[k] = v;
    },
    removeStorageSync: (k) => {
      delete storage[k];
    },
  };
  const sandbox = { module, exports: module.exports, console, setTimeout, clearTimeout, wx };
  vm.runInNewContext(SOURCE, sandbox, { filename: 'index.js' });
  const client = module.exports.createClient({ baseUrl: 'https://auth.example.com' });
  const user = await client.getUser();
  assert.equal(user.seen, 'Bearer t1');
  assert.equal(storage.wxauth.token, 't1');
});

test('the declarations name every export and every client method', () => {
  const runtime = require('..');
  for (const name of Object.keys(runtime)) {
    assert.match(DECLARATIONS, new RegExp('export declare (function|class) ' + name + '\\b'), name);
  }
  const client = runtime.createClient({ baseUrl: 'https://auth.example.com', wx: {} });
  const body = DECLARATIONS.match(/export interface Client \{([\s\S]*?)\n\}/);
  assert.ok(body, 'index.d.ts declares `interface Client`');
  const declared = Array.from(body[1].matchAll(/^ {2}(\w+)[<(]/gm), (m) => m[1]).sort();
  assert.deepEqual(declared, Object.keys(client).sort());
});
