import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** Files fedsim ships inside what it writes (report.html inlines uPlot, so it opens offline). */
export type AssetName = 'uplot.js' | 'uplot.css';

const FILES: Record<AssetName, string> = {
  'uplot.js': 'uplot/dist/uPlot.iife.min.js',
  'uplot.css': 'uplot/dist/uPlot.min.css',
};

const require = createRequire(import.meta.url);

type Sea = { isSea(): boolean; getAsset(key: string, encoding: string): string };
let sea: Sea | null | undefined;

/**
 * `node:sea` when this process is a single executable, else null. It is loaded with require
 * (readAsset is synchronous) and guarded: some Node 20 builds have no such module.
 */
function seaModule(): Sea | null {
  if (sea !== undefined) return sea;
  try {
    const m = require('node:sea') as Sea;
    sea = typeof m.isSea === 'function' && m.isSea() ? m : null;
  } catch {
    sea = null;
  }
  return sea;
}

/**
 * The text of an asset: from the single executable's embedded assets when fedsim runs as
 * one, else from the installed package. All asset access goes through here.
 */
export function readAsset(name: AssetName): string {
  const s = seaModule();
  if (s) return s.getAsset(name, 'utf8');
  return readFileSync(require.resolve(FILES[name]), 'utf8');
}
