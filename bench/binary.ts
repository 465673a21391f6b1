/**
 * `npm run bench -- binary`: fedsim as one file (docs/binary.md): its size, and how fast it
 * starts beside `node bin/fedsim.js` on the same machine in the same invocation.
 *
 * 1. Builds dist/fedsim (scripts/build-sea.js) unless it is there and newer than
 *    dist/src/cli.js; prints its size and what it is made of (dist/sea/).
 * 2. Start-up: `dist/fedsim --version` and `node bin/fedsim.js --version`, one warm-up then
 *    RUNS timed runs each, alternating; the median and the fastest wall time.
 * 3. First run on a cold cache: `fedsim run` of one worker and one MobileNetV2 round with
 *    --validate-model on (it unpacks onnxruntime, 46 MB, to the cache), PASSES times on a
 *    fresh XDG_CACHE_HOME and PASSES times on a warm one; the difference of the medians is
 *    what unpacking costs once.
 *
 * Figures only: the exit code is 1 only when a command fails.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FEDSIM, MB, ROOT, makeTempRoot, median, runBench, table } from './lib.js';

const RUNS = 10;
const PASSES = 5;
const EXE = path.join(ROOT, 'dist', 'fedsim');
const WORK = path.join(ROOT, 'dist', 'sea');

const ms = (x: number) => `${x.toFixed(0)} ms`;

/** Wall time of one command, or throws with its output when it fails. */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, cwd = ROOT): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 300_000 });
  const t = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}:\n${r.stderr}${r.stdout}`);
  return t;
}

function ensureBuilt(): void {
  const cli = path.join(ROOT, 'dist', 'src', 'cli.js');
  if (existsSync(EXE) && statSync(EXE).mtimeMs >= statSync(cli).mtimeMs) {
    console.log(`   dist/fedsim is newer than dist/src/cli.js: measured as it is (npm run build makes it anew)`);
    return;
  }
  const t = timed(process.execPath, [path.join(ROOT, 'scripts', 'build-sea.js'), '--quiet']);
  console.log(`   built dist/fedsim in ${(t / 1000).toFixed(1)} s (node scripts/build-sea.js)`);
}

function sizes(): void {
  const size = statSync(EXE).size;
  console.log(`   dist/fedsim: ${(size / MB).toFixed(1)} MB`);
  const rows: Array<[string, number]> = [];
  const f = (name: string) => path.join(WORK, name);
  if (existsSync(f('sea-prep.blob'))) {
    const blob = statSync(f('sea-prep.blob')).size;
    rows.push(['node executable (stripped)', (size - blob) / MB]);
    rows.push(['SEA blob: everything below plus code cache', blob / MB]);
    rows.push(['  fedsim.cjs (the program, minified)', statSync(f('fedsim.cjs')).size / MB]);
    const manifest = JSON.parse(readFileSync(f('unpacked-assets.json'), 'utf8')) as Record<string, { size: number; br: boolean }>;
    for (const [name, m] of Object.entries(manifest)) {
      const stored = statSync(f(`asset-${name}${m.br ? '.br' : ''}`)).size;
      rows.push([`  ${name}${m.br ? ` (brotli, ${(m.size / MB).toFixed(1)} MB unpacked)` : ''}`, stored / MB]);
    }
  }
  if (rows.length) console.log(table(['part', 'MB'], rows.map(([a, b]) => [a, b.toFixed(2)]), [false, true]).replace(/^/gm, '   '));
}

async function main(): Promise<number> {
  const tmp = makeTempRoot('binary');
  console.log(`fedsim bench binary — ${new Date().toISOString()}`);
  console.log(`machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown cpu'}), node ${process.version}`);
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    console.log('the binary is built for Linux x64 only: nothing to measure here');
    return 0;
  }
  console.log('\n== size');
  ensureBuilt();
  sizes();

  console.log(`\n== start-up: --version, ${RUNS} runs each after one warm-up (wall time)`);
  const env = { ...process.env, XDG_CACHE_HOME: path.join(tmp, 'cache-version') };
  const exe: number[] = [];
  const src: number[] = [];
  timed(EXE, ['--version'], env);
  timed(process.execPath, [FEDSIM, '--version'], env);
  for (let i = 0; i < RUNS; i++) {
    exe.push(timed(EXE, ['--version'], env));
    src.push(timed(process.execPath, [FEDSIM, '--version'], env));
  }
  const bare: number[] = [];
  for (let i = 0; i < RUNS; i++) bare.push(timed(process.execPath, ['-e', '0'], env));
  console.log(
    table(
      ['command', 'median', 'fastest'],
      [
        ['dist/fedsim --version', ms(median(exe)), ms(Math.min(...exe))],
        ['node bin/fedsim.js --version', ms(median(src)), ms(Math.min(...src))],
        ['node -e 0 (the floor)', ms(median(bare)), ms(Math.min(...bare))],
      ],
      [false, true, true],
    ).replace(/^/gm, '   '),
  );

  console.log(`\n== first run on a cold cache: one worker, one MobileNetV2 round, --validate-model on (${PASSES} passes each)`);
  const args = ['run', '--workers', '1', '--nodes', '1', '--rounds', '1', '--payload', 'mobilenetv2', '--validate-model', 'on', '--headless', '--out'];
  const cold: number[] = [];
  const warm: number[] = [];
  const warmCache = path.join(tmp, 'cache-warm');
  timed(EXE, [...args, path.join(tmp, 'out-prime')], { ...process.env, XDG_CACHE_HOME: warmCache });
  for (let i = 0; i < PASSES; i++) {
    const cache = path.join(tmp, `cache-cold-${i}`);
    cold.push(timed(EXE, [...args, path.join(tmp, `out-cold-${i}`)], { ...process.env, XDG_CACHE_HOME: cache }));
    rmSync(cache, { recursive: true, force: true });
    warm.push(timed(EXE, [...args, path.join(tmp, `out-warm-${i}`)], { ...process.env, XDG_CACHE_HOME: warmCache }));
  }
  console.log(
    table(
      ['cache', 'median', 'fastest'],
      [
        ['cold (unpacks onnxruntime)', ms(median(cold)), ms(Math.min(...cold))],
        ['warm (checks its SHA-256)', ms(median(warm)), ms(Math.min(...warm))],
        ['unpacking once (difference)', ms(median(cold) - median(warm)), ''],
      ],
      [false, true, true],
    ).replace(/^/gm, '   '),
  );
  return 0;
}

runBench('binary', main);
