/**
 * Safe mode's key files: one ed25519 key pair per worker, and the list of public keys the
 * server accepts.
 *
 * In a key directory (`fedsim keys gen --workers N --out DIR`):
 * - `worker-<i>.key`: worker i's 32-byte seed as hex and a newline, mode 0600 (the
 *   directory is made 0700);
 * - `worker-<i>.pub`: worker i's public key as hex and a newline, mode 0644;
 * - `keys.list`: every public key as hex, one a line, line i for worker i, mode 0644. The
 *   server needs only this file; each worker node needs only its own workers' `.key` files.
 *
 * Keys are generated with tweetnacl (`nacl.sign.keyPair()`, whose randomness in Node comes
 * from crypto.getRandomValues); signing and verifying are in src/auth/sign.ts.
 */
import { chmodSync, closeSync, fstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import nacl from 'tweetnacl';
import { UsageError } from '../errors.js';
import { publicKeyOfSeed, signer } from './sign.js';

export const KEY_LIST_FILE = 'keys.list';
export const keyFileName = (index: number) => `worker-${index}.key`;
export const pubFileName = (index: number) => `worker-${index}.pub`;

const HEX32 = /^[0-9a-fA-F]{64}$/;

export interface WorkerKey {
  index: number;
  publicKeyHex: string;
  sign(message: Buffer): Buffer;
}

export interface GenerateOptions {
  workers: number;
  outDir: string;
  /** Overwrite existing key files (otherwise any existing target file is an error). */
  force?: boolean;
}

/**
 * Writes one key pair per worker 0..workers-1 and keys.list into outDir. Without `force`,
 * an existing target file is a UsageError and nothing is written. Every file is written to
 * a temporary name with its final mode and then renamed into place, so a secret is never
 * readable by others, even for an instant when --force replaces a file with looser modes.
 * With --force, files of workers beyond the new count are left alone (keys.list decides
 * which keys the server accepts).
 */
export function generateKeys(opts: GenerateOptions): { dir: string; list: string } {
  const { workers, force = false } = opts;
  if (!Number.isSafeInteger(workers) || workers < 1) throw new UsageError(`--workers must be an integer >= 1, got ${String(workers)}`);
  if (!opts.outDir) throw new UsageError('--out needs a directory');
  const dir = path.resolve(opts.outDir);
  const list = path.join(dir, KEY_LIST_FILE);

  const targets = [list];
  for (let i = 0; i < workers; i++) targets.push(path.join(dir, keyFileName(i)), path.join(dir, pubFileName(i)));
  let dirExists = false;
  try {
    const st = statSync(dir);
    if (!st.isDirectory()) throw new UsageError(`--out ${dir} exists and is not a directory`);
    dirExists = true;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new UsageError(`cannot use --out ${dir}: ${(e as Error).message}`);
  }
  if (dirExists && !force) {
    for (const t of targets) {
      if (exists(t)) throw new UsageError(`${t} already exists: use --force to overwrite the keys in ${dir}`);
    }
  }

  // Every key first, so a failure cannot leave half a directory of new keys.
  const pairs = Array.from({ length: workers }, () => nacl.sign.keyPair());

  if (!dirExists) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700); // the mode asked of mkdir is reduced by the umask
    } catch (e) {
      throw new UsageError(`cannot create --out ${dir}: ${(e as Error).message}`);
    }
  }
  const pubHex: string[] = [];
  pairs.forEach((kp, i) => {
    const seedHex = Buffer.from(kp.secretKey.subarray(0, 32)).toString('hex');
    const pub = Buffer.from(kp.publicKey).toString('hex');
    pubHex.push(pub);
    writeAtomic(path.join(dir, keyFileName(i)), `${seedHex}\n`, 0o600);
    writeAtomic(path.join(dir, pubFileName(i)), `${pub}\n`, 0o644);
  });
  writeAtomic(list, `${pubHex.join('\n')}\n`, 0o644);
  return { dir, list };
}

function exists(file: string): boolean {
  try {
    statSync(file);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/** Writes `file` through a new temporary file in the same directory, created with `mode`. */
function writeAtomic(file: string, data: string, mode: number): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    rmSync(tmp, { force: true }); // left by a killed run with the same pid
    writeFileSync(tmp, data, { mode, flag: 'wx' });
    chmodSync(tmp, mode); // exact, whatever the umask
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new UsageError(`cannot write ${file}: ${(e as Error).message}`);
  }
}

/**
 * `--keys DIR` of `fedsim run`: the directory `fedsim keys gen` wrote. A file given instead
 * (keys.list itself, say), a directory that does not exist or one with no keys.list is a usage
 * error that says what to pass, before any node starts. (A worker node's `--keys DIR` needs
 * only its own workers' key files, not keys.list.)
 */
export function checkKeysDir(dir: string): void {
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // Not there, or a path through a file (ENOTDIR): no directory either way.
    throw new UsageError(`--keys ${dir}: no such directory; make one with \`fedsim keys gen --workers N --out ${dir}\``);
  }
  if (!isDir) {
    const hint = path.basename(dir) === KEY_LIST_FILE ? `, here ${path.resolve(path.dirname(dir))}` : '';
    throw new UsageError(`--keys ${dir} is a file: give the directory \`fedsim keys gen\` wrote (it holds ${KEY_LIST_FILE} and the worker keys)${hint}`);
  }
  if (!statSync(path.join(dir, KEY_LIST_FILE), { throwIfNoEntry: false })?.isFile()) throw new UsageError(`--keys ${dir} has no ${KEY_LIST_FILE}: give the directory \`fedsim keys gen\` wrote`);
}

/**
 * The public keys of a keys.list (lower-case hex), in order: line i is worker i. Blank lines
 * and `#` comments (whole lines or the end of a line) are ignored. A line that is not 64 hex
 * characters, a key listed twice, or a list without keys is a UsageError naming file:line.
 */
export function loadKeyList(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read the key list ${file}: ${(e as Error).message}`);
  }
  const keys: string[] = [];
  const lineOf = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const hash = raw.indexOf('#');
    const line = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
    if (!line) return;
    const where = `${file}:${i + 1}`;
    if (!HEX32.test(line)) {
      const shown = line.length > 80 ? `${line.slice(0, 80)}…` : line;
      throw new UsageError(`${where}: expected an ed25519 public key (64 hex characters), got "${shown}"`);
    }
    const key = line.toLowerCase();
    const first = lineOf.get(key);
    if (first !== undefined) throw new UsageError(`${where}: this key is already on line ${first}: each worker needs its own key`);
    lineOf.set(key, i + 1);
    keys.push(key);
  });
  if (keys.length === 0) throw new UsageError(`${file}: no public keys in the key list`);
  return keys;
}

/**
 * The keys of the given workers from `dir` (their `worker-<i>.key` files). A worker without
 * a key file is left out of the map: the caller decides whether that is an error. A key file
 * that group or others can access, or that does not hold a 64-hex-character seed, is a
 * UsageError.
 */
export function loadWorkerKeys(dir: string, indices: Iterable<number>): Map<number, WorkerKey> {
  const out = new Map<number, WorkerKey>();
  for (const index of indices) {
    if (!Number.isSafeInteger(index) || index < 0) throw new UsageError(`worker index ${String(index)} is not an integer >= 0`);
    if (out.has(index)) continue;
    const file = path.join(dir, keyFileName(index));
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new UsageError(`cannot read the key file ${file}: ${(e as Error).message}`);
    }
    let text: string;
    try {
      const st = fstatSync(fd);
      if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
        throw new UsageError(
          `${file} is accessible by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): a private key must be readable only by its owner; run chmod 600 ${file}`,
        );
      }
      text = readFileSync(fd, 'utf8');
    } catch (e) {
      if (e instanceof UsageError) throw e;
      throw new UsageError(`cannot read the key file ${file}: ${(e as Error).message}`);
    } finally {
      closeSync(fd);
    }
    const seedHex = text.trim();
    if (!HEX32.test(seedHex)) throw new UsageError(`${file}: expected an ed25519 seed (64 hex characters and a newline)`);
    // Derived natively from the seed (tweetnacl's keyPair.fromSeed is ~100x slower).
    out.set(index, { index, publicKeyHex: publicKeyOfSeed(seedHex), sign: signer(seedHex) });
  }
  return out;
}
