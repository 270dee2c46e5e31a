#!/usr/bin/env node
/**
 * Builds the optional native addon (native/ → native/build/Release/remus_native.node); the package's
 * install step. Plain JavaScript so it runs before anything is compiled.
 *
 *   node tools/build-native.mjs [--verbose]
 *
 * Runs `node-gyp rebuild` in native/ with the node-gyp that ships with npm (no extra dependency),
 * never asks it to download headers when the local ones fit (npm's `nodedir`, else the headers
 * installed next to this node binary), honours `JOBS`, and checks that the result loads.
 *
 * The addon is an accelerator, not a requirement: on ANY failure this prints exactly one line,
 *   remus-wan: native addon not built (<short reason>); using the TypeScript fallback
 * to stderr and exits 0 (the full node-gyp output goes to native/build/build-native.log).
 * `--verbose` or REMUS_WAN_NATIVE_VERBOSE=1 streams node-gyp's output instead of capturing it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
const product = join(nativeDir, 'build', 'Release', 'remus_native.node');
const logFile = join(nativeDir, 'build', 'build-native.log');
const verbose = process.argv.includes('--verbose') || process.env.REMUS_WAN_NATIVE_VERBOSE === '1';
const TIMEOUT_MS = 10 * 60 * 1000;

/** Print the one warning line and leave successfully: the TypeScript fallback takes over. */
function giveUp(reason) {
  const short = reason.replace(/\s+/g, ' ').trim().slice(0, 200);
  process.stderr.write(`remus-wan: native addon not built (${short}); using the TypeScript fallback\n`);
  process.exit(0);
}

/** node-gyp's entry script: npm's own copy first (it is what npm would run), then a local one. */
function findNodeGyp() {
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  if (process.env.npm_execpath) {
    // npm_execpath is …/npm/bin/npm-cli.js
    candidates.push(
      join(dirname(dirname(process.env.npm_execpath)), 'node_modules/node-gyp/bin/node-gyp.js'),
    );
  }
  const bin = dirname(process.execPath);
  candidates.push(join(bin, '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js')); // Unix
  candidates.push(join(bin, 'node_modules/npm/node_modules/node-gyp/bin/node-gyp.js')); // Windows
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed locally: fine
  }
  return candidates.find((c) => c.endsWith('.js') && existsSync(c));
}

/**
 * Headers to build against without downloading: npm's `nodedir` when npm passed it, else the
 * prefix of this node binary when it holds headers of exactly this version (/usr for Debian's
 * and NodeSource's packages). Undefined: let node-gyp use its cache (or download, where allowed).
 */
function localNodedir() {
  if (process.env.npm_config_nodedir) return undefined; // node-gyp reads it from the environment
  const prefix = resolve(dirname(process.execPath), '..');
  const versionH = join(prefix, 'include', 'node', 'node_version.h');
  if (!existsSync(join(prefix, 'include', 'node', 'node_api.h')) || !existsSync(versionH)) return undefined;
  const text = readFileSync(versionH, 'utf8');
  const part = (name) => text.match(new RegExp(`#define ${name}\\s+(\\d+)`))?.[1];
  const version = `v${part('NODE_MAJOR_VERSION')}.${part('NODE_MINOR_VERSION')}.${part('NODE_PATCH_VERSION')}`;
  return version === process.version ? prefix : undefined;
}

/** The most telling line of a failed build's output. */
function reasonFrom(output, status) {
  const lines = output.split('\n').map((l) => l.trim());
  const compiler = lines.find((l) => /: (fatal )?error: /.test(l));
  if (compiler) return compiler.replace(/^\.\.[\\/]/, 'native/');
  const stack = lines.find((l) => /^gyp ERR! stack Error: /.test(l));
  if (stack) return stack.replace(/^gyp ERR! stack Error: /, '');
  const err = lines.find((l) => /^gyp ERR! /.test(l) && !/not ok$/.test(l));
  if (err) return err.replace(/^gyp ERR! /, '');
  return `node-gyp exited with status ${status}`;
}

function main() {
  if (!existsSync(join(nativeDir, 'binding.gyp'))) giveUp('native/binding.gyp is missing');
  const nodeGyp = findNodeGyp();
  if (!nodeGyp) giveUp('node-gyp not found next to npm');

  const args = [nodeGyp, 'rebuild'];
  const nodedir = localNodedir();
  if (nodedir) args.push(`--nodedir=${nodedir}`);
  if (process.env.JOBS) args.push(`--jobs=${process.env.JOBS}`);

  const run = spawnSync(process.execPath, args, {
    cwd: nativeDir,
    env: process.env,
    encoding: 'utf8',
    stdio: verbose ? 'inherit' : 'pipe',
    maxBuffer: 64 * 1024 * 1024,
    timeout: TIMEOUT_MS,
  });
  const output = `${run.stdout ?? ''}${run.stderr ?? ''}`;
  const logHint = () => {
    if (verbose) return '';
    try {
      mkdirSync(dirname(logFile), { recursive: true });
      writeFileSync(logFile, output);
      return `; log: ${relative(process.cwd(), logFile) || logFile}`;
    } catch {
      return '';
    }
  };
  if (run.error) {
    const why = run.error.code === 'ETIMEDOUT' ? `timed out after ${TIMEOUT_MS / 1000} s` : run.error.message;
    giveUp(`node-gyp: ${why}${logHint()}`);
  }
  if (run.status !== 0) giveUp(`${reasonFrom(output, run.status)}${logHint()}`);
  if (!existsSync(product))
    giveUp(`node-gyp succeeded but ${relative(root, product)} is missing${logHint()}`);

  try {
    const addon = createRequire(import.meta.url)(product);
    for (const name of [
      'encodeDelta',
      'applyDelta',
      'applyDeltaHash',
      'applyDeltasHash',
      'isZeroPage',
      'hashPageInto',
      'hashPages',
      'classifyPage',
      'encodePage',
    ]) {
      if (typeof addon[name] !== 'function') throw new Error(`it does not export ${name}()`);
    }
  } catch (err) {
    giveUp(`built but does not load: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
  process.stdout.write(`remus-wan: native addon built (${relative(root, product)})\n`);
}

try {
  main();
} catch (err) {
  giveUp(err instanceof Error ? err.message.split('\n')[0] : String(err));
}
