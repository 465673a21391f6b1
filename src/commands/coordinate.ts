import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { formatPayload, payloadOf } from '../config/payload.js';
import type { Scenario } from '../config/settings.js';
import { Coordinator } from '../control/coordinator.js';
import type { TlsFiles } from '../control/protocol.js';
import { ExitCode, UsageError } from '../errors.js';
import { HeadlessSink } from '../report/headless.js';
import { handFaultsOn, withHandFaults } from '../config/handFaults.js';
import { formatHostPort, parseIntFlag } from '../config/values.js';
import { buildSummary, formatSummaryTable, type Summary } from '../report/summary.js';
import { type Threshold, evaluateThresholds, junitXml } from '../report/thresholds.js';
import { RunRecorder } from '../report/history.js';
import { AbortWatch } from '../report/liveThresholds.js';
import type { MetricsEndpoint } from '../report/metrics.js';
import { RampRecorder, formatRamp } from '../report/ramp.js';
import { expectedInRound } from '../sim/ramp.js';
import { rampPlanOf } from '../config/settings.js';
import { renderReportHtml } from '../report/html.js';
import { fedsimVersion } from '../runtime/self.js';
import { importEmbedded } from '../runtime/sea.js';
import { RunStore } from '../sim/runStore.js';
import { log } from './output.js';

export interface CoordinateOptions {
  scenario: Scenario;
  listen: { host: string; port: number };
  token: string;
  tls: TlsFiles;
  outDir: string;
  /** Called once the control port is bound (fedsim run starts its child nodes here). */
  onListening?: (port: number, abort: (reason: string) => void, announce: (line: string) => void) => void;
  /** Pass/fail criteria over the run's merged figures (exit 99 when one fails). */
  thresholds?: readonly Threshold[];
  /** The terminal UI instead of plain lines (stdout is a TTY and --headless was not given). */
  tui?: boolean;
  /** Read commands from standard input (`fire FAULT_ID`, `faults`): manual faults without the TUI. */
  stdinCommands?: boolean;
  /** `--metrics-port`: serve the merged figures in Prometheus format here while the run goes. */
  metrics?: { host: string; port: number };
}

/** `--stdin-commands`: one command per line on standard input. */
function readCommands(coordinator: Coordinator, sc: Scenario): () => void {
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const [cmd, arg] = line.trim().split(/\s+/, 2);
    if (!cmd) return;
    if (cmd === 'fire' && arg) log(coordinator.fireManual(arg));
    else if (cmd === 'faults') log(`faults: ${sc.faults.map((f) => `${f.id} (${f.kind}, ${f.trigger.type})`).join(', ') || 'none'}`);
    else log(`unknown command "${line.trim()}": use "fire FAULT_ID" or "faults"`);
  });
  return () => {
    rl.close();
    process.stdin.destroy();
  };
}

function timestamp(d: Date): string {
  return d.toISOString().replace(/[:]/g, '').replace(/\..+/, '');
}

export function defaultOutDir(now = new Date()): string {
  return path.join('fedsim-runs', timestamp(now));
}

export function prepareOutDir(dir: string): string {
  const abs = path.resolve(dir);
  try {
    mkdirSync(path.join(abs, 'logs'), { recursive: true });
  } catch (e) {
    throw new UsageError(`--out ${abs} cannot be created (${(e as Error).message}): choose a writable directory`);
  }
  return abs;
}

/** Runs the coordinator to the end of the run, writes summary.json and returns the exit code. */
/**
 * Loads the UI module. Ink decides once, when it loads, whether it runs "in CI" (CI or
 * CONTINUOUS_INTEGRATION set) and then draws only the last frame. Here a person is at a real
 * terminal (useTui checked it), so those variables are hidden while Ink loads and put back after.
 */
async function loadTui(): Promise<typeof import('../tui/sink.js')> {
  const keys = ['CI', 'CONTINUOUS_INTEGRATION'] as const;
  const saved = keys.map((k) => [k, process.env[k]] as const);
  for (const k of keys) delete process.env[k];
  try {
    // The binary carries the UI as a separate ESM bundle (docs/binary.md).
    return (await importEmbedded<typeof import('../tui/sink.js')>('tui.mjs')) ?? (await import('../tui/sink.js'));
  } finally {
    for (const [k, v] of saved) if (v !== undefined) process.env[k] = v;
  }
}

/** `--metrics-port P [--metrics-host H]` → where to serve /metrics (undefined: not served). */
export function metricsOf(flags: { metricsPort?: string; metricsHost?: string }): CoordinateOptions['metrics'] {
  if (flags.metricsPort === undefined) {
    if (flags.metricsHost !== undefined) throw new UsageError('--metrics-host needs --metrics-port');
    return undefined;
  }
  return { host: flags.metricsHost ?? '127.0.0.1', port: parseIntFlag(flags.metricsPort, '--metrics-port', 0, 65535) };
}

export async function coordinate(o: CoordinateOptions): Promise<{ code: number; summary: Summary }> {
  const tui = o.tui === true;
  const sc = withHandFaults(o.scenario, tui);
  const started = new Date();
  const store = new RunStore(sc.workers, sc.rounds);
  let metrics: MetricsEndpoint | null = null;
  if (o.metrics) {
    // prom-client loads only when metrics are asked for: nodes and plain runs start without it.
    const { MetricsEndpoint } = await import('../report/metrics.js');
    metrics = new MetricsEndpoint(store, { name: sc.name, transport: sc.transport, payload: formatPayload(payloadOf(sc)), version: fedsimVersion() });
    try {
      const mport = await metrics.listen(o.metrics.host, o.metrics.port);
      const line = `metrics: http://${formatHostPort(o.metrics.host, mport)}/metrics (Prometheus text format)`;
      if (tui) store.apply({ type: 'notable', text: line });
      else log(line);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  const recorder = new RunRecorder(store, o.outDir);
  // With the terminal UI the screen is the coordinator's; its lines go to logs/coordinator.log.
  const logFile = tui ? createWriteStream(path.join(o.outDir, 'logs', 'coordinator.log')) : null;
  const say = logFile ? (line: string) => void logFile.write(`${line}\n`) : log;
  const coordinator = new Coordinator({ scenario: sc, listen: o.listen, token: o.token, tls: o.tls, store, log: say });
  const port = await coordinator.listen();
  // Thresholds with abortOnFail stop the run as soon as they fail (exit 99).
  const watch = new AbortWatch(store, o.thresholds ?? [], (reason) => coordinator.abort(reason));
  // A ramp: each step judged by the thresholds on its own rounds, and the capacity named.
  const plan = rampPlanOf(sc);
  const rampRec = plan ? new RampRecorder(store, plan) : null;
  // Ink and React load only when the UI is on: nodes and headless runs start faster without them.
  const sink: { close(): void } = tui
    ? new (await loadTui()).TuiSink(
        store,
        { name: sc.name, transport: sc.transport, payload: formatPayload(payloadOf(sc)), nodes: sc.nodes, handFaults: handFaultsOn(sc, tui) },
        {
          fireHand: (chunk, kind) => coordinator.fireHand(chunk, kind),
          healChunk: (chunk) => coordinator.healChunk(chunk),
          setPaused: (p) => coordinator.setPaused(p),
          quit: () => coordinator.abort('quit by hand (q)'),
        },
      )
    : new HeadlessSink(store, log, { holders: plan ? (v) => expectedInRound(plan, v) : undefined });
  const t0 = performance.now();
  const onSignal = (sig: string) => () => coordinator.abort(`interrupted by ${sig}`);
  const onInt = onSignal('SIGINT');
  const onTerm = onSignal('SIGTERM');
  let stopCommands = () => undefined as void;
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    say(`fedsim: run "${sc.name}": ${sc.workers} workers in ${sc.nodes} nodes over ${sc.transport}, payload ${formatPayload(payloadOf(sc))}, ${sc.rounds} rounds; control on ${o.listen.host}:${port}`);
    // What a person must see (the run token, how to attach nodes): a line, or a line on the screen.
    const announce = (line: string) => (tui ? store.apply({ type: 'notable', text: line }) : log(line));
    o.onListening?.(port, (reason) => coordinator.abort(reason), announce);
    if (o.stdinCommands) stopCommands = readCommands(coordinator, sc);
    const result = await coordinator.run();
    sink.close();
    await coordinator.close();
    watch.close();
    rampRec?.close();
    let failure = result.failure;
    const completed = result.server?.report?.roundsCompleted ?? 0;
    if (!failure && completed < sc.rounds) failure = `${completed} of ${sc.rounds} rounds completed`;
    // A fault the backend could not apply did not happen as asked: the run does not pass.
    const broken = result.faults.find((f) => f.verdict === 'error');
    if (!failure && broken) failure = `fault ${broken.faultId}#${broken.instance} on chunk ${broken.chunk}: ${broken.error ?? 'the backend failed'}`;
    const summary = buildSummary({
      fedsimVersion: fedsimVersion(),
      startedAt: started.toISOString(),
      // From the start barrier (not the wait for nodes to attach) to the end.
      durationMs: (result.endedAtMs ?? performance.now()) - (result.startedAtMs ?? t0),
      name: sc.name,
      transport: sc.transport,
      payload: formatPayload(payloadOf(sc)),
      workers: sc.workers,
      roundsRequested: sc.rounds,
      nodes: result.workers,
      server: result.server,
      faults: result.faults,
      failure,
    });
    await recorder.close();
    const thresholds = evaluateThresholds(o.thresholds ?? [], summary);
    const failedThresholds = thresholds.filter((t) => !t.ok);
    const ramp = rampRec ? rampRec.result(o.thresholds ?? []) : null;
    const written = { ...summary, thresholds, ramp, scenario: sc };
    writeFileSync(path.join(o.outDir, 'summary.json'), `${JSON.stringify(written, null, 2)}\n`);
    writeFileSync(path.join(o.outDir, 'junit.xml'), junitXml(summary, thresholds));
    // The report is a view of the files above: if it cannot be made, the run's result stands.
    let report = path.join(o.outDir, 'report.html');
    try {
      writeFileSync(report, renderReportHtml({ summary: written, rows: recorder.rows(), faults: recorder.faultWindows() }));
    } catch (e) {
      log(`fedsim: report.html not written: ${(e as Error).message}`);
      report = 'not written';
    }
    log('');
    log(formatSummaryTable(summary));
    if (ramp) for (const line of formatRamp(ramp)) log(line);
    for (const t of thresholds) log(`threshold   ${t.ok ? 'PASS' : 'FAIL'} ${t.metric}: ${t.expr} (measured ${t.value === null ? 'nothing' : Math.round(t.value * 1000) / 1000})`);
    log(`summary: ${path.join(o.outDir, 'summary.json')}; junit: ${path.join(o.outDir, 'junit.xml')}; report: ${report}`);
    if (!failure && failedThresholds.length > 0) log(`fedsim: ${failedThresholds.length} of ${thresholds.length} thresholds failed (exit ${ExitCode.thresholds})`);
    if (watch.abortedBy) log(`fedsim: stopped by a threshold with abortOnFail (exit ${ExitCode.thresholds})`);
    const code = watch.abortedBy ? ExitCode.thresholds : failure ? ExitCode.runFailed : failedThresholds.length > 0 ? ExitCode.thresholds : ExitCode.ok;
    return { code, summary };
  } finally {
    watch.close();
    rampRec?.close();
    await metrics?.close();
    await recorder.close();
    sink.close();
    logFile?.end();
    stopCommands();
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    sink.close();
  }
}
