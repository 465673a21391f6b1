#!/usr/bin/env node
// Builds fedsim as one file: a Node single executable application (SEA), Linux x64.
// `npm run build` runs it after tsc; docs/binary.md says what goes in and why.
//
//   node scripts/build-sea.js [--out FILE] [--work DIR] [--no-strip] [--no-code-cache] [--quiet]
//
// 1. The terminal UI (dist/src/tui/sink.js with Ink, React and yoga-layout, whose WASM is
//    inlined as base64 and which uses top-level await) becomes one ESM file, tui.mjs.
// 2. The rest of the program (bin/fedsim.js → dist/src/cli.js and every dependency) becomes
//    one CommonJS file, fedsim.cjs: the SEA main script on Node 20 must be CommonJS.
//    onnxruntime-node's `require()` of its native binding is rewritten to load the binding
//    from the cache directory (src/runtime/sea.ts), and the UI module stays outside.
// 3. Assets: tui.mjs, onnxruntime's binding and libonnxruntime.so.1 (brotli-compressed),
//    the files src/assets.ts reads (uPlot for report.html), and a two-line CommonJS helper.
//    Their SHA-256 (of the unpacked bytes) is built into fedsim.cjs.
// 4. `node --experimental-sea-config` makes the blob (with V8's code cache of fedsim.cjs);
//    a copy of this node, stripped of its symbol table and debug sections, gets the blob
//    injected by postject. (Step 3 runs before step 2: the bundle carries the assets' hashes.)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import zlib from 'node:zlib';
import * as esbuild from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const SENTINEL_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

function parseArgs(argv) {
  const o = { out: path.join(ROOT, 'dist', 'fedsim'), work: path.join(ROOT, 'dist', 'sea'), strip: true, codeCache: true, quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--out') o.out = path.resolve(argv[++i]);
    else if (a === '--work') o.work = path.resolve(argv[++i]);
    else if (a === '--no-strip') o.strip = false;
    else if (a === '--no-code-cache') o.codeCache = false;
    else if (a === '--quiet') o.quiet = true;
    else {
      process.stderr.write(`build-sea: unknown argument ${a}\nusage: node scripts/build-sea.js [--out FILE] [--work DIR] [--no-strip] [--no-code-cache] [--quiet]\n`);
      process.exit(2);
    }
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const t0 = performance.now();
function say(msg) {
  if (!opts.quiet) process.stderr.write(`build-sea: ${msg} (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
}
function fail(msg) {
  process.stderr.write(`build-sea: ${msg}\n`);
  process.exit(1);
}

if (process.platform !== 'linux' || process.arch !== 'x64') fail(`the binary is built for Linux x64 only, not ${process.platform} ${process.arch}`);
if (!existsSync(path.join(ROOT, 'dist', 'src', 'cli.js'))) fail('dist/src/cli.js is missing: run `npx tsc -p .` first (npm run build does)');

const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const { gitCommitOf } = await import(pathToFileURL(path.join(ROOT, 'dist', 'src', 'runtime', 'self.js')).href);
/** `git rev-parse --short HEAD`; without git, the checkout's files read as `fedsim --version` does from source. */
function gitCommit() {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' });
  if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  return gitCommitOf(ROOT)?.slice(0, 7) ?? 'unknown';
}
const commit = process.env.FEDSIM_BUILD_COMMIT || gitCommit();

rmSync(opts.work, { recursive: true, force: true });
mkdirSync(opts.work, { recursive: true });
const work = (f) => path.join(opts.work, f);

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');
/**
 * name → { file in the blob, metadata for the runtime, unpack }. Assets with `unpack` are
 * written to the cache directory by src/runtime/sea.ts (their SHA-256 goes into the bundle);
 * the others are read in memory with node:sea's getAsset (src/assets.ts).
 */
const assets = new Map();
function addAsset(name, bytes, { compress = false, mode = 0o644, unpack = true } = {}) {
  const stored = compress
    ? zlib.brotliCompressSync(bytes, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: bytes.length } })
    : bytes;
  const file = work(`asset-${name}${compress ? '.br' : ''}`);
  writeFileSync(file, stored);
  assets.set(name, { file, unpack, meta: { sha256: sha256(bytes), size: bytes.length, br: compress, mode } });
}

// ---------------------------------------------------------------- 1. the terminal UI, ESM
const tui = await esbuild.build({
  entryPoints: [path.join(ROOT, 'dist', 'src', 'tui', 'sink.js')],
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  minify: true,
  keepNames: true,
  legalComments: 'none',
  write: false,
  outfile: work('tui.mjs'),
  // Ink's React DevTools hook (imported only with DEV=true) needs a package fedsim does not
  // install: it stays a dynamic import that fails as Ink expects (a warning), not a static one.
  plugins: [{ name: 'ink-devtools', setup: (b) => b.onResolve({ filter: /^\.\/devtools\.js$/ }, (args) => ({ path: args.path, external: true })) }],
  define: { 'process.env.NODE_ENV': '"production"' },
  // CommonJS dependencies (React) call require() for Node's built-ins.
  banner: { js: "import { createRequire as __fedsimCreateRequire } from 'node:module'; const require = __fedsimCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
addAsset('tui.mjs', Buffer.from(tui.outputFiles[0].contents));
say(`tui.mjs ${(assets.get('tui.mjs').meta.size / 1e6).toFixed(2)} MB`);

// ---------------------------------------------------------------- 3. the other assets
const ortDir = path.join(path.dirname(require.resolve('onnxruntime-node/package.json')), 'bin', 'napi-v6', 'linux', 'x64');
const ORT_BINDING = 'onnxruntime_binding.node';
const ORT_LIB = 'libonnxruntime.so.1';
addAsset(ORT_BINDING, readFileSync(path.join(ortDir, ORT_BINDING)), { compress: true, mode: 0o755 });
addAsset(ORT_LIB, readFileSync(path.join(ortDir, ORT_LIB)), { compress: true, mode: 0o755 });
say('onnxruntime native files compressed');
// Safe mode's ed25519 (src/auth/ed25519.ts): sodium-native's prebuilt addon, libsodium linked in.
const SODIUM_BINDING = 'sodium-native.node';
const sodiumFile = path.join(path.dirname(require.resolve('sodium-native/package.json')), 'prebuilds', 'linux-x64', SODIUM_BINDING);
addAsset(SODIUM_BINDING, readFileSync(sodiumFile), { compress: true, mode: 0o755 });

const { ESM_IMPORT_HELPER, ESM_IMPORT_HELPER_SOURCE } = await import(pathToFileURL(path.join(ROOT, 'dist', 'src', 'runtime', 'sea.js')).href);
addAsset(ESM_IMPORT_HELPER, Buffer.from(ESM_IMPORT_HELPER_SOURCE));

// src/assets.ts reads its files (uPlot) from the binary's assets by the same names.
const assetsTs = path.join(ROOT, 'src', 'assets.ts');
if (existsSync(assetsTs)) {
  const block = /const FILES[^=]*=\s*\{([^}]*)\}/.exec(readFileSync(assetsTs, 'utf8'));
  const pairs = block ? [...block[1].matchAll(/'([^']+)'\s*:\s*'([^']+)'/g)] : [];
  if (pairs.length === 0) fail('src/assets.ts: no FILES map found (name → package file) to embed');
  for (const [, name, spec] of pairs) addAsset(name, readFileSync(require.resolve(spec)), { unpack: false });
}

// ---------------------------------------------------------------- 2. the program, CommonJS
const seaModule = path.join(ROOT, 'dist', 'src', 'runtime', 'sea.js');
const bindingRequire = /require\(`\.\.\/bin\/napi-v\d+\/\$\{process\.platform\}\/\$\{process\.arch\}\/onnxruntime_binding\.node`\)/;
const seaPlugin = {
  name: 'fedsim-sea',
  setup(build) {
    // The UI is the tui.mjs asset (src/commands/coordinate.ts imports it through importEmbedded).
    build.onResolve({ filter: /\/tui\/sink\.js$/ }, (args) => ({ path: args.path, external: true }));
    // onnxruntime-node loads its binding from the cache directory.
    build.onLoad({ filter: /onnxruntime-node[\\/]dist[\\/]binding\.js$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      if (!bindingRequire.test(text)) throw new Error(`${args.path}: the require() of the native binding was not found (onnxruntime-node changed?)`);
      const load = `require(${JSON.stringify(seaModule)}).loadEmbeddedAddon(${JSON.stringify(ORT_BINDING)}, [${JSON.stringify(ORT_LIB)}])`;
      return { contents: text.replace(bindingRequire, load), loader: 'js' };
    });
    // fedsim's one require() of sodium-native becomes a plain require(), so the bundle holds it.
    const sodiumRequire = "createRequire(import.meta.url)('sodium-native')";
    build.onLoad({ filter: /dist[\\/]src[\\/]auth[\\/]ed25519\.js$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      if (!text.includes(sodiumRequire)) throw new Error(`${args.path}: ${sodiumRequire} not found (src/auth/ed25519.ts changed?)`);
      return { contents: text.replace(sodiumRequire, "require('sodium-native')"), loader: 'js' };
    });
    // sodium-native finds its prebuilt addon with node-gyp-build; in the binary it is an asset.
    build.onLoad({ filter: /sodium-native[\\/]index\.js$/ }, () => ({
      contents: `module.exports = require(${JSON.stringify(seaModule)}).loadEmbeddedAddon(${JSON.stringify(SODIUM_BINDING)});`,
      loader: 'js',
    }));
  },
};
const manifest = Object.fromEntries([...assets].filter(([, a]) => a.unpack).map(([name, a]) => [name, a.meta]));
// The same manifest beside the build, for tests and the curious.
writeFileSync(work('unpacked-assets.json'), `${JSON.stringify(manifest, null, 2)}\n`);
const main = await esbuild.build({
  entryPoints: [path.join(ROOT, 'bin', 'fedsim.js')],
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  minify: true,
  keepNames: true,
  legalComments: 'none',
  outfile: work('fedsim.cjs'),
  metafile: true,
  define: {
    'import.meta.url': '__fedsimImportMetaUrl',
    FEDSIM_BUILD_VERSION: JSON.stringify(pkg.version),
    FEDSIM_BUILD_COMMIT: JSON.stringify(commit),
    FEDSIM_SEA_ASSETS: JSON.stringify(manifest),
  },
  // In the SEA main script __filename is the executable; import.meta.url becomes its file URL.
  banner: { js: "var __fedsimImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
  plugins: [seaPlugin],
  logLevel: 'warning',
});
// What went into the bundle, for size questions (e.g. esbuild's analyzer).
writeFileSync(work('fedsim.meta.json'), JSON.stringify(main.metafile));
const inputs = Object.keys(main.metafile.inputs);
for (const bad of ['node_modules/ink/', 'node_modules/react/', 'node_modules/yoga-layout/']) {
  if (inputs.some((f) => f.includes(bad))) fail(`the main bundle must not contain ${bad} (it loads with the UI only)`);
}
if (!inputs.some((f) => /onnxruntime-node[\\/]dist[\\/]binding\.js$/.test(f))) fail('onnxruntime-node is not in the main bundle');
if (!inputs.some((f) => /sodium-native[\\/]index\.js$/.test(f))) fail('sodium-native is not in the main bundle');
say(`fedsim.cjs ${(statSync(work('fedsim.cjs')).size / 1e6).toFixed(2)} MB`);

// ---------------------------------------------------------------- 4. blob and executable
const seaConfig = {
  main: work('fedsim.cjs'),
  output: work('sea-prep.blob'),
  disableExperimentalSEAWarning: true,
  useSnapshot: false,
  useCodeCache: opts.codeCache,
  assets: Object.fromEntries([...assets].map(([name, a]) => [name, a.file])),
};
writeFileSync(work('sea-config.json'), `${JSON.stringify(seaConfig, null, 2)}\n`);
const blob = spawnSync(process.execPath, ['--experimental-sea-config', work('sea-config.json')], { encoding: 'utf8' });
if (blob.status !== 0) fail(`node --experimental-sea-config failed:\n${blob.stderr}${blob.stdout}`);
say(`blob ${(statSync(work('sea-prep.blob')).size / 1e6).toFixed(1)} MB`);

// Made under a temp name beside the output and renamed at the end: no half-made executable.
mkdirSync(path.dirname(opts.out), { recursive: true });
const exe = `${opts.out}.${process.pid}.tmp`;
let stripped = false;
if (opts.strip) {
  // The node binary's symbol table and debug sections are not needed to run it (-12 MB here); the
  // dynamic symbols native addons link against (napi_*) stay.
  const s = spawnSync('strip', ['-o', exe, process.execPath], { encoding: 'utf8' });
  stripped = s.status === 0;
  if (!stripped) say(`strip unavailable or failed (${(s.error?.message ?? s.stderr).trim()}): using node as it is`);
}
if (!stripped) copyFileSync(process.execPath, exe);
chmodSync(exe, 0o755);

// postject prints LIEF's warnings about section names of the stripped binary; they are harmless.
const { inject } = require('postject');
const origWarn = console.warn;
const origLog = console.log;
if (opts.quiet) console.log = () => {};
console.warn = () => {};
try {
  await inject(exe, 'NODE_SEA_BLOB', readFileSync(work('sea-prep.blob')), { sentinelFuse: SENTINEL_FUSE });
} catch (e) {
  rmSync(exe, { force: true });
  fail(`postject could not inject the blob: ${e?.message ?? e}`);
} finally {
  console.warn = origWarn;
  console.log = origLog;
}

renameSync(exe, opts.out);
say(`${path.relative(process.cwd(), opts.out) || opts.out}: ${(statSync(opts.out).size / 1e6).toFixed(1)} MB, fedsim ${pkg.version}, commit ${commit}, node ${process.version}`);
