import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { type Browser, type Page, chromium } from 'playwright-core';
import { REPORT_CHARTS, type ReportData } from '../../src/report/html.js';
import { runCli, tempDir } from '../helpers/cli.js';
import { requireTool } from '../helpers/privileged.js';

const CHROMIUM = '/usr/bin/chromium';

/** Headless Chromium as the brief's CI runs it; closed when the test ends. */
async function browser(t: TestContext): Promise<Browser> {
  const b = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.after(() => b.close());
  return b;
}

interface Opened {
  page: Page;
  /** Console errors and uncaught page errors. */
  problems: string[];
  /** Every request the page made to anything but its own file. */
  offsite: string[];
  report: ReportData;
}

/** Opens DIR/report.html with the network refused, recording errors and any request that leaves the file. */
async function open(b: Browser, dir: string): Promise<Opened> {
  const page = await b.newPage({ viewport: { width: 1280, height: 900 } });
  const problems: string[] = [];
  const offsite: string[] = [];
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`page: ${e.message}`));
  page.on('request', (r) => !r.url().startsWith('file:') && offsite.push(r.url()));
  await page.route(/^(https?|wss?|ftp):/, (route) => {
    offsite.push(route.request().url());
    return route.abort();
  });
  await page.goto(pathToFileURL(path.join(dir, 'report.html')).href, { waitUntil: 'load' });
  // A blocked load is reported after the load event: give such late reports time to arrive.
  await page.waitForLoadState('networkidle');
  const report = await page.evaluate(() => (window as unknown as { fedsimReport: ReportData }).fedsimReport);
  assert.ok(report, 'window.fedsimReport is set');
  return { page, problems, offsite, report };
}

/** Each chart container: its id, the uPlot instances and canvases in it, how many canvas pixels are painted, a "no samples" note. */
function charts(page: Page) {
  return page.$$eval('.chart', (els) =>
    els.map((el) => {
      const canvases = [...el.querySelectorAll('.uplot canvas')] as HTMLCanvasElement[];
      const painted = canvases.map((c) => {
        const px = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
        return n;
      });
      return { id: (el as HTMLElement).dataset.chart, uplots: el.querySelectorAll('.uplot').length, canvases: canvases.length, painted, empty: el.querySelector('.nodata') !== null };
    }),
  );
}

const csvRows = (dir: string) => readFileSync(path.join(dir, 'stats_history.csv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split(','));

test('report.html of a real run opens offline in Chromium: every chart drawn, the run inside', async (t) => {
  if (!requireTool(t, 'chromium', ['--version'])) return;
  const out = tempDir();
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const r = await runCli(['run', '--workers', '20', '--nodes', '2', '--rounds', '5', '--headless', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /; report: .*report\.html/);
  const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));

  const { page, problems, offsite, report } = await open(await browser(t), out);

  const drawn = await charts(page);
  assert.deepEqual(drawn.map((c) => c.id), REPORT_CHARTS, 'a container per chart');
  for (const c of drawn) {
    assert.equal(c.uplots, 1, `${c.id}: one uPlot chart`);
    assert.equal(c.canvases, 1, `${c.id}: its canvas`);
    assert.ok(c.painted[0] > 1000, `${c.id}: the canvas is drawn on (${c.painted[0]} pixels)`);
    assert.equal(c.empty, false, `${c.id}: not empty`);
  }
  assert.equal(await page.locator('.uplot').count(), REPORT_CHARTS.length, 'no chart elsewhere');

  // The run's data, as summary.json and stats_history.csv hold it.
  assert.equal(summary.roundLines.length, 5);
  assert.equal(report.summary.roundLines.length, summary.roundLines.length);
  assert.deepEqual(report.summary, summary);
  assert.equal(report.summary.perChunk.length, 2);
  assert.equal(await page.locator('#chunks tbody tr').count(), 2, 'the per-chunk table has a row per chunk');
  assert.equal(await page.locator('#nodes tbody tr').count(), 3, 'the server and two worker nodes');
  const rows = csvRows(out);
  assert.deepEqual(report.history.elapsed_s, rows.map((row) => Number(row[0])), 'the rows of stats_history.csv');
  assert.equal(report.history.workers_done.at(-1), 20);
  assert.match(await page.title(), /^fedsim PASSED: default$/);
  assert.deepEqual(problems, [], 'no console or page errors');
  assert.deepEqual(offsite, [], 'no request leaves the file');
});

test('a run that failed before it started still gets a report that opens', async (t) => {
  if (!requireTool(t, 'chromium', ['--version'])) return;
  const out = tempDir();
  t.after(() => rmSync(out, { recursive: true, force: true }));
  // No node ever attaches: the run fails after a second, with summary.json and report.html.
  const r = await runCli(['coordinator', '--listen', '127.0.0.1:0', '--token', 'test-token-123', '--workers', '4', '--expect-nodes', '1', '--expect-timeout', '1', '--headless', '--out', out]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /; report: .*report\.html/);

  const { page, problems, offsite, report } = await open(await browser(t), out);
  assert.equal(report.summary.status, 'failed');
  assert.match(await page.locator('header .failure').innerText(), /did not start within 1 s/);
  const drawn = await charts(page);
  assert.equal(drawn.length, REPORT_CHARTS.length);
  // No round closed: those two say so; the time charts draw the rows there are.
  for (const c of drawn) {
    const noRounds = c.id === 'rounds' || c.id === 'propagation';
    assert.equal(c.empty, noRounds, `${c.id}: "no samples" exactly when there is no data`);
    assert.equal(c.uplots, noRounds ? 0 : 1, c.id);
  }
  assert.deepEqual(problems, [], 'no console or page errors');
  assert.deepEqual(offsite, [], 'no request leaves the file');
});
