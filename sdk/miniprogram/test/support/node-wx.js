'use strict';
// A `wx` for Node built on its http module, doing what the mini program runtime does
// with wx.request and wx.uploadFile, so the library can talk to a real wxauth. Login
// codes are the fake WeChat's `dev:<name>#<n>`: one user, a fresh code every time.

const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const crypto = require('node:crypto');

const MIME = { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif', '.webp': 'image/webp' };

function findHeader(headers, name) {
  return Object.keys(headers || {}).find((k) => k.toLowerCase() === name);
}

function encodeForm(data) {
  return Object.keys(data)
    .map((k) => encodeURIComponent(k) + '=' + encodeURIComponent(data[k]))
    .join('&');
}

/** Sends one request; resolves `{ statusCode, header, body }` with the body a Buffer. */
function send(url, method, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: method, headers: headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({ statusCode: res.statusCode, header: res.headers, body: Buffer.concat(chunks) })
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * `name` is the dev user every login code names. `calls` counts requests by
 * "METHOD /path", for assertions about how many logins and refreshes were made.
 */
function createNodeWx(name) {
  const storage = new Map();
  const wx = {
    name: name,
    storage: storage,
    codes: 0,
    loginCalls: 0,
    calls: new Map(),
    count(route) {
      return wx.calls.get(route) || 0;
    },
    login(o) {
      wx.loginCalls += 1;
      wx.codes += 1;
      const code = 'dev:' + name + '#' + wx.codes;
      setImmediate(() => o.success({ code: code, errMsg: 'login:ok' }));
    },
    request(o) {
      const method = (o.method || 'GET').toUpperCase();
      const headers = Object.assign({}, o.header);
      // wx.request's default Content-Type.
      const typeKey = findHeader(headers, 'content-type');
      if (!typeKey) headers['content-type'] = 'application/json';
      const type = String(headers[typeKey || 'content-type']);
      let url = o.url;
      let body;
      if (o.data !== undefined && o.data !== null) {
        if (method === 'GET' || method === 'HEAD') {
          if (typeof o.data === 'object') {
            const query = encodeForm(o.data);
            if (query) url += (url.includes('?') ? '&' : '?') + query;
          }
        } else if (typeof o.data === 'string') {
          body = o.data;
        } else if (o.data instanceof ArrayBuffer) {
          body = Buffer.from(o.data);
        } else if (/x-www-form-urlencoded/i.test(type)) {
          body = encodeForm(o.data);
        } else {
          body = JSON.stringify(o.data);
        }
      }
      record(method, url);
      send(url, method, headers, body).then(
        (res) => {
          const text = res.body.toString('utf8');
          let data = text;
          if ((o.dataType || 'json') === 'json' && o.responseType !== 'arraybuffer') {
            try {
              data = JSON.parse(text);
            } catch (e) {
              // not JSON: the string, as wx.request gives it
            }
          }
          o.success({ statusCode: res.statusCode, data: data, header: res.header, errMsg: 'request:ok' });
        },
        (err) => o.fail({ errMsg: 'request:fail ' + err.message })
      );
    },
    uploadFile(o) {
      let file;
      try {
        file = fs.readFileSync(o.filePath);
      } catch (err) {
        setImmediate(() => o.fail({ errMsg: 'uploadFile:fail ' + err.message }));
        return;
      }
      const boundary = '----wxauthtest' + crypto.randomBytes(8).toString('hex');
      const parts = [];
      const formData = o.formData || {};
      for (const key of Object.keys(formData)) {
        parts.push(
          Buffer.from(
            `--${boundary}\r\nContent-Disposition: form-data; name="${key}"\r\n\r\n${formData[key]}\r\n`
          )
        );
      }
      const filename = path.basename(o.filePath);
      const type = MIME[path.extname(filename).toLowerCase()] || 'application/octet-stream';
      parts.push(
        Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="${o.name}"; filename="${filename}"\r\n` +
            `Content-Type: ${type}\r\n\r\n`
        ),
        file,
        Buffer.from(`\r\n--${boundary}--\r\n`)
      );
      const body = Buffer.concat(parts);
      const headers = Object.assign({}, o.header, {
        'content-type': 'multipart/form-data; boundary=' + boundary,
        'content-length': body.length,
      });
      record('POST', o.url);
      send(o.url, 'POST', headers, body).then(
        // wx.uploadFile hands the body over as a string, unparsed.
        (res) => o.success({ statusCode: res.statusCode, data: res.body.toString('utf8'), errMsg: 'uploadFile:ok' }),
        (err) => o.fail({ errMsg: 'uploadFile:fail ' + err.message })
      );
    },
    getStorageSync(key) {
      return storage.has(key) ? JSON.parse(storage.get(key)) : '';
    },
    setStorageSync(key, value) {
      storage.set(key, JSON.stringify(value));
    },
    removeStorageSync(key) {
      storage.delete(key);
    },
  };

  function record(method, url) {
    const route = method + ' ' + new URL(url).pathname;
    wx.calls.set(route, wx.count(route) + 1);
  }

  return wx;
}

module.exports = { createNodeWx, send };
