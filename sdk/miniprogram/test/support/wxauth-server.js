'use strict';
// Starts the wxauth binary the build produced as `wxauth serve --dev` on a free loopback
// port with a fresh data directory, and reads its address from the JSON log line.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { spawn, execFile } = require('node:child_process');

const REPO = path.resolve(__dirname, '..', '..', '..', '..');

/**
 * The binary under test: TEST_WXAUTH_BIN (which must exist), else the debug build in
 * this checkout, else null.
 */
function wxauthBinary() {
  const named = process.env.TEST_WXAUTH_BIN;
  if (named) {
    if (!fs.existsSync(named)) throw new Error('TEST_WXAUTH_BIN names no file: ' + named);
    return named;
  }
  const debug = path.join(REPO, 'target', 'debug', 'wxauth');
  return fs.existsSync(debug) ? debug : null;
}

/** The environment without WXAUTH_* names: wxauth refuses any it does not know. */
function cleanEnv() {
  const env = {};
  for (const key of Object.keys(process.env)) {
    if (!key.startsWith('WXAUTH_')) env[key] = process.env[key];
  }
  return env;
}

async function startDevServer(bin) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxauth-sdk-test-'));
  const child = spawn(
    bin,
    ['serve', '--dev', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--log-format', 'json', '--log', 'info'],
    { env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] }
  );
  const log = [];
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  // Read stderr to its end, so a full pipe never blocks the server.
  const lines = readline.createInterface({ input: child.stderr });
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('wxauth did not report its address:\n' + log.join('\n'))), 30000);
    lines.on('line', (line) => {
      log.push(line);
      let entry;
      try {
        entry = JSON.parse(line);
      } catch (e) {
        return;
      }
      if (entry.fields && entry.fields.message === 'wxauth is serving') {
        clearTimeout(timer);
        resolve(entry.fields.addr);
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`wxauth exited (${code}, ${signal}) before serving:\n` + log.join('\n')));
    });
  });
  return {
    baseUrl: 'http://' + addr,
    dataDir: dataDir,
    log: log,
    /** Runs a wxauth admin command on the server's data directory. */
    admin(args) {
      return new Promise((resolve, reject) => {
        execFile(bin, args.concat(['--data-dir', dataDir]), { env: cleanEnv() }, (err, stdout, stderr) =>
          err ? reject(new Error(`wxauth ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(stdout)
        );
      });
    },
    async stop() {
      child.kill('SIGTERM');
      const { code } = await exited;
      fs.rmSync(dataDir, { recursive: true, force: true });
      return code;
    },
  };
}

module.exports = { wxauthBinary, startDevServer, REPO };
