#!/usr/bin/env node
// Screenshots a run directory's report.html (full page, 1280 px wide) with headless Chromium:
//   node scripts/report-screenshot.js RUN_DIR OUT.png
// Used by hand for docs/report.png. Needs chromium (Debian package; CHROMIUM=path to override).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const [dir, out] = process.argv.slice(2);
if (!dir || !out) {
  console.error('usage: node scripts/report-screenshot.js RUN_DIR OUT.png');
  process.exit(2);
}
const file = path.resolve(dir, 'report.html');
if (!existsSync(file)) {
  console.error(`${file} does not exist: give the --out directory of a finished run`);
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(pathToFileURL(file).href);
  await page.waitForFunction(() => window.fedsimReport !== undefined);
  await page.screenshot({ path: out, fullPage: true });
  if (problems.length) console.error(`the page reported errors:\n  ${problems.join('\n  ')}`);
  console.log(`${out}: ${file}`);
  process.exitCode = problems.length ? 1 : 0;
} finally {
  await browser.close();
}
