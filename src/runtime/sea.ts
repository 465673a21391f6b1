/**
 * fedsim as one file (docs/binary.md): what the single executable (Node SEA) needs at run
 * time. Run from source (bin/fedsim.js) none of this is used: every function here answers
 * "not the binary" and the callers take their ordinary path.
 *
 * What cannot run from inside the blob (onnxruntime's native library and its binding, the
 * terminal UI's ESM bundle with top-level await) is embedded as SEA assets by
 * scripts/build-sea.js and unpacked once to $XDG_CACHE_HOME/fedsim/<version>/ (default
 * ~/.cache). Every file there is checked by SHA-256 against the manifest built into the
 * binary before it is used, and written by temp file + rename in the same directory, so
 * several fedsim processes starting at once on one host never see a half-written file.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { brotliDecompressSync } from 'node:zlib';
import { UsageError } from '../errors.js';

/** One embedded file, as scripts/build-sea.js describes it. */
export interface EmbeddedAsset {
  /** SHA-256 (hex) of the unpacked file. */
  sha256: string;
  /** Bytes of the unpacked file. */
  size: number;
  /** The asset is stored brotli-compressed in the binary. */
  br: boolean;
  /** File mode of the unpacked file. */
  mode: number;
}

// Defined by scripts/build-sea.js (esbuild `define`) in the binary's bundle only; run from
// source these identifiers do not exist, and `typeof` says so without throwing.
declare const FEDSIM_BUILD_VERSION: string | undefined;
declare const FEDSIM_BUILD_COMMIT: string | undefined;
declare const FEDSIM_SEA_ASSETS: Record<string, EmbeddedAsset> | undefined;

/** The asset that lets the CJS main script import an ESM file (see importEmbedded). */
export const ESM_IMPORT_HELPER = 'esm-import.cjs';
/** Its text: a file-based CommonJS module may use import(); the SEA main script may not (Node 20). */
export const ESM_IMPORT_HELPER_SOURCE = 'module.exports = (url) => import(url);\n';

let seaChecked: boolean | undefined;

/** True inside the single executable built by scripts/build-sea.js. */
export function isBinary(): boolean {
  if (seaChecked !== undefined) return seaChecked;
  seaChecked = false;
  if (typeof FEDSIM_SEA_ASSETS !== 'undefined') {
    try {
      // The bundle run by a plain `node` (a debugging aid) is not the binary: it has no assets.
      seaChecked = (createRequire(import.meta.url)('node:sea') as { isSea(): boolean }).isSea();
    } catch {
      seaChecked = false;
    }
  }
  return seaChecked;
}

/** Version and commit baked in at build time, or null when run from source. */
export function buildInfo(): { version: string; commit: string } | null {
  if (typeof FEDSIM_BUILD_VERSION === 'undefined') return null;
  return { version: FEDSIM_BUILD_VERSION, commit: typeof FEDSIM_BUILD_COMMIT === 'undefined' ? 'unknown' : FEDSIM_BUILD_COMMIT };
}

/** $XDG_CACHE_HOME/fedsim/<version> (XDG: a relative XDG_CACHE_HOME is ignored), default ~/.cache/fedsim/<version>. */
export function cacheDir(version: string, env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache');
  return path.join(base, 'fedsim', version);
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function readIfExists(file: string): Buffer | null {
  try {
    return readFileSync(file);
  } catch {
    return null;
  }
}

function cannotUnpack(name: string, dir: string, why: string): UsageError {
  return new UsageError(
    `cannot unpack ${name} of the fedsim binary to ${dir} (${why}): ` +
      'set XDG_CACHE_HOME to a writable directory (fedsim keeps its embedded native libraries and UI there)',
  );
}

/**
 * Writes `data` as `dir/name` unless a file with `sha` is already there: to a temp name in the
 * same directory, then renamed over the final name (atomic), then checked again. Another
 * process doing the same at the same time writes identical bytes, so whichever rename comes
 * last, the file is whole and right.
 */
export function unpackFile(dir: string, name: string, expect: { sha256: string; mode: number }, data: () => Buffer): string {
  const file = path.join(dir, name);
  const present = readIfExists(file);
  if (present && sha256(present) === expect.sha256) return file;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw cannotUnpack(name, dir, (e as Error).message);
  }
  const tmp = path.join(dir, `.${name}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    writeFileSync(tmp, data(), { mode: expect.mode, flag: 'wx' });
    chmodSync(tmp, expect.mode);
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw cannotUnpack(name, dir, (e as Error).message);
  }
  const written = readIfExists(file);
  if (!written || sha256(written) !== expect.sha256) {
    throw cannotUnpack(name, dir, `the unpacked file does not have the expected SHA-256 ${expect.sha256}`);
  }
  return file;
}

const unpacked = new Map<string, string>();

/** The path of embedded asset `name`, unpacked (once per process) to the cache directory. */
export function embeddedFile(name: string): string {
  const done = unpacked.get(name);
  if (done) return done;
  if (!isBinary() || typeof FEDSIM_SEA_ASSETS === 'undefined') throw new Error(`${name}: not running as the fedsim binary`);
  const meta = FEDSIM_SEA_ASSETS[name];
  if (!meta) throw new Error(`${name}: no such asset in this fedsim binary`);
  const info = buildInfo();
  const dir = cacheDir(info ? info.version : 'unknown');
  const file = unpackFile(dir, name, meta, () => {
    const sea = createRequire(import.meta.url)('node:sea') as { getRawAsset(key: string): ArrayBuffer };
    const raw = Buffer.from(sea.getRawAsset(name));
    return meta.br ? brotliDecompressSync(raw) : raw;
  });
  unpacked.set(name, file);
  return file;
}

/**
 * A native addon embedded in the binary: `deps` (shared libraries it links, found beside it
 * through its RUNPATH $ORIGIN) are unpacked first, then the addon is loaded from the cache.
 */
export function loadEmbeddedAddon(name: string, deps: string[] = []): unknown {
  for (const d of deps) embeddedFile(d);
  const file = embeddedFile(name);
  const mod = { exports: {} as unknown };
  process.dlopen(mod, file);
  return mod.exports;
}

/**
 * An ESM module embedded in the binary, unpacked and imported from the cache; null when not
 * running as the binary (the caller imports its own module then). The SEA main script cannot
 * use import() on Node 20, so the import goes through a small CommonJS file in the cache.
 */
export async function importEmbedded<T>(name: string): Promise<T | null> {
  if (!isBinary()) return null;
  const file = embeddedFile(name);
  const helper = embeddedFile(ESM_IMPORT_HELPER);
  const load = createRequire(helper)(helper) as (url: string) => Promise<T>;
  return load(pathToFileURL(file).href);
}
