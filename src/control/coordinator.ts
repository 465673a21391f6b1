import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { formatChunk, parseChunk } from '../config/chunk.js';
import type { Scenario } from '../config/settings.js';
import { UsageError } from '../errors.js';
import { ControlService, type ControlServer, type CoordinatorMessage, type Hello, type NodeMessage } from '../proto/gen/control.js';
import type { RoundLine, ServerReport } from '../sim/flServer.js';
import type { NodeView, RunStore, WorkerSnapshotIn } from '../sim/runStore.js';
import type { WorkerNodeReport } from '../sim/workerStats.js';
import type { FaultInstanceReport } from '../sim/faults.js';
import { shutdownGrpcServer } from '../runtime/grpc.js';
import { CONTROL_CHANNEL_OPTIONS, PROTOCOL_VERSION, TOKEN_METADATA, type TlsFiles, serverCredentials, tokenMatches, tokenProof } from './protocol.js';
import { formatHostPort } from '../config/values.js';

export interface CoordinatorOptions {
  readonly scenario: Scenario;
  readonly listen: { host: string; port: number };
  readonly token: string;
  readonly tls: TlsFiles;
  readonly store: RunStore;
  readonly log: (line: string) => void;
}

export interface NodeOutcome {
  view: NodeView;
  report: WorkerNodeReport | null;
}

export interface CoordinatorResult {
  failure: string | null;
  /** Fault instances as the nodes reported them (merged in the summary). */
  faults: FaultInstanceReport[];
  server: { view: NodeView; report: (ServerReport & { maxRssBytes?: number }) | null } | null;
  workers: NodeOutcome[];
  startedAtMs: number | null;
  endedAtMs: number;
}

type Call = grpc.ServerDuplexStream<NodeMessage, CoordinatorMessage>;

interface Session {
  readonly view: NodeView;
  readonly call: Call;
  readonly peerHost: string;
  chunkIndex: number;
  ready: boolean;
  assigned: boolean;
  finished: { exitCode: number; json: string; error: string } | null;
  samples: Array<{ offset: number; rtt: number }>;
  readyInfo: { host: string; httpPort: number; grpcPort: number } | null;
  lastShift: number | null;
  /** The "above 90 % CPU" warning was given. */
  warnedCpu?: boolean;
}

const wall = () => performance.timeOrigin + performance.now();
const mono = () => performance.now();

function peerHostOf(peer: string): string {
  const m = /^(?:ipv4:|ipv6:)?\[?([^\]]*?)\]?:\d+$/.exec(peer);
  return m ? m[1] : peer;
}

/**
 * The control plane: nodes attach over one gRPC stream each; the coordinator assigns
 * roles and chunks, holds the start barrier, watches heartbeats, estimates clock offsets
 * and gathers the nodes' figures into the store.
 */
export class Coordinator {
  readonly runId = randomUUID();
  private readonly server = new grpc.Server(CONTROL_CHANNEL_OPTIONS);
  private seq = 0;
  private serverSession: Session | null = null;
  private readonly workers = new Map<number, Session>();
  private readonly timers: NodeJS.Timeout[] = [];
  private resultResolve!: (r: CoordinatorResult) => void;
  private readonly result: Promise<CoordinatorResult>;
  private done = false;
  private stopping = false;
  private readonly k: number;
  private readonly faultReports: FaultInstanceReport[] = [];
  private readonly firedHere = new Set<string>();
  private readonly manualFired = new Map<string, number>();

  constructor(private readonly opts: CoordinatorOptions) {
    this.k = opts.scenario.nodes;
    this.result = new Promise((resolve) => (this.resultResolve = resolve));
    const impl: ControlServer = { attach: (call: Call) => this.attach(call) };
    this.server.addService(ControlService, impl);
  }

  async listen(): Promise<number> {
    const { host, port } = this.opts.listen;
    const addr = formatHostPort(host, port);
    const creds = serverCredentials(this.opts.tls);
    return new Promise((resolve, reject) => {
      this.server.bindAsync(addr, creds, (err, bound) => {
        if (err) {
          reject(/in use|EADDRINUSE|No address added/i.test(err.message) ? new UsageError(`--listen ${addr} is already in use or cannot be bound: choose another port, or 0 for a free one`) : err);
          return;
        }
        resolve(bound);
      });
    });
  }

  /** Waits for the nodes, runs, and resolves when the run is over (never rejects). */
  run(): Promise<CoordinatorResult> {
    const sc = this.opts.scenario;
    this.timers.push(
      setTimeout(() => {
        if (this.opts.store.phase === 'waiting') this.fail(`the run did not start within ${sc.expectTimeout} s: ${this.missingText()}`);
      }, sc.expectTimeout * 1000),
    );
    const hb = sc.heartbeatMs;
    this.timers.push(setInterval(() => this.tick(), Math.min(250, hb / 2)));
    this.timers.push(setInterval(() => this.pingAll(), hb));
    this.timers.push(setInterval(() => this.sendClockCorrections(), 5000));
    return this.result;
  }

  /** Ends the run from outside (a signal, the user): nodes are stopped. */
  /**
   * Fires a fault with a manual trigger by hand (keys in the TUI, `fire ID` on stdin). Each
   * call is the next instance, up to the fault's maxCount. Returns what happened, in words.
   */
  fireManual(faultId: string): string {
    const manual = this.opts.scenario.faults.filter((f) => f.trigger.type === 'manual');
    const f = manual.find((x) => x.id === faultId);
    if (!f) {
      return `no manual fault "${faultId}": ${manual.length ? `manual faults are ${manual.map((x) => x.id).join(', ')}` : 'the scenario has none (give a fault "manual: true")'}`;
    }
    if (this.opts.store.phase !== 'running') return `fault ${faultId}: the run is ${this.opts.store.phase}, not running`;
    const n = (this.manualFired.get(faultId) ?? 0) + 1;
    if (n > f.maxCount) return `fault ${faultId} already fired ${f.maxCount} time(s) (its maxCount)`;
    this.manualFired.set(faultId, n);
    this.fireFault(`${faultId}#${n}`, null);
    return `fault ${faultId}#${n} fired by hand`;
  }

  /** A hand fault on worker node `chunk` (the TUI's keys): the next instance of `hand-KIND-cN`. */
  fireHand(chunk: number, kind: 'reset' | 'blackhole' | 'delay'): string {
    return this.fireManual(`hand-${kind}-c${chunk}`);
  }

  /** Heals now every fault instance still on worker node `chunk` (the TUI's `h`). */
  healChunk(chunk: number): string {
    const s = this.workers.get(chunk);
    if (!s) return `no worker node ${chunk}`;
    const on = [...this.opts.store.faults.values()].filter((f) => f.healedAt === null && f.chunks.includes(s.view.chunk));
    if (on.length === 0) return `no fault is on ${s.view.id}`;
    for (const f of on) {
      this.send(s, { fault: { faultId: f.instanceId, action: 'heal' } });
      this.opts.store.apply({ type: 'faultHealed', instanceId: f.instanceId, at: mono() });
    }
    const msg = `healed by hand on ${s.view.id}: ${on.map((f) => f.instanceId).join(', ')}`;
    this.note(msg);
    return msg;
  }

  /** Holds or releases new rounds on the server (the TUI's `p`). */
  setPaused(paused: boolean): string {
    const srv = this.serverSession;
    if (!srv || this.opts.store.phase !== 'running') return 'the run is not running';
    this.send(srv, { pause: { paused } });
    this.opts.store.apply({ type: 'paused', paused });
    const msg = paused ? 'new rounds paused by hand (the open round will not close until resumed)' : 'new rounds resumed';
    this.note(msg);
    return msg;
  }

  abort(reason: string): void {
    this.fail(reason);
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await shutdownGrpcServer(this.server, 1500);
  }

  // ---- streams -------------------------------------------------------------------------

  private attach(call: Call): void {
    const auth = String(call.metadata.get(TOKEN_METADATA)[0] ?? '');
    const peer = call.getPeer();
    if (!tokenMatches(`Bearer ${this.opts.token}`, auth)) {
      this.note(`refused a node from ${peer}: wrong run token`);
      call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: 'wrong run token' });
      return;
    }
    let session: Session | null = null;
    call.on('data', (m: NodeMessage) => {
      if (!session) {
        if (m.hello) session = this.hello(call, m.hello, peerHostOf(peer));
        return;
      }
      try {
        this.message(session, m);
      } catch (e) {
        // A bad message must not take the stream down silently: say what it was.
        this.note(`${session.view.id}: could not handle a message: ${(e as Error).stack ?? e}`);
      }
    });
    const closed = (how: string) => {
      if (session) this.streamClosed(session, how);
    };
    call.on('end', () => {
      closed('the node ended its control stream');
      call.end();
    });
    call.on('error', (e: Error) => closed(`control stream error: ${e.message}`));
    call.on('cancelled', () => closed('the control stream was cancelled'));
  }

  private send(s: Session, body: Omit<CoordinatorMessage, 'runId' | 'seq' | 'sentAtMs'>): void {
    if (s.call.cancelled || s.call.writableEnded) return;
    s.call.write({ runId: this.runId, seq: ++this.seq, sentAtMs: wall(), ...body });
  }

  private refuse(call: Call, reason: string, who: string): null {
    this.note(`refused ${who}: ${reason}`);
    call.write({ runId: this.runId, seq: ++this.seq, sentAtMs: wall(), refused: { reason } });
    call.end();
    return null;
  }

  private hello(call: Call, h: Hello, peerHost: string): Session | null {
    const who = `a ${h.role || 'node'} node from ${h.host || peerHost} (pid ${h.pid})`;
    if (h.protocolVersion !== PROTOCOL_VERSION) {
      return this.refuse(call, `this coordinator speaks control protocol v${PROTOCOL_VERSION}, the node v${h.protocolVersion}: run the same fedsim version on every host`, who);
    }
    if (this.done || this.opts.store.phase !== 'waiting') return this.refuse(call, 'the run has already started', who);
    let id: string;
    let chunk = '';
    let chunkIndex = 0;
    if (h.role === 'server') {
      if (this.serverSession) return this.refuse(call, `a server node is already attached (${this.serverSession.view.host}, pid ${this.serverSession.view.pid})`, who);
      id = 'server';
    } else if (h.role === 'worker') {
      if (h.chunk) {
        let c;
        try {
          c = parseChunk(h.chunk);
        } catch (e) {
          return this.refuse(call, (e as Error).message, who);
        }
        if (c.k !== this.k) return this.refuse(call, `chunk "${h.chunk}" does not fit this run: it has ${this.k} worker nodes (use "n of ${this.k}" or leave --chunk out)`, who);
        const taken = this.workers.get(c.n);
        if (taken) return this.refuse(call, `chunk ${formatChunk(c)} is already attached (${taken.view.host}, pid ${taken.view.pid})`, who);
        chunkIndex = c.n;
      } else {
        for (let n = 1; n <= this.k; n++) {
          if (!this.workers.has(n)) {
            chunkIndex = n;
            break;
          }
        }
        if (chunkIndex === 0) return this.refuse(call, `all ${this.k} worker chunks are taken`, who);
      }
      chunk = formatChunk({ n: chunkIndex, k: this.k });
      id = `worker ${chunk}`;
    } else {
      return this.refuse(call, `unknown role "${h.role}"`, who);
    }
    const s: Session = {
      view: {
        id,
        role: h.role,
        chunk,
        host: h.host || peerHost,
        pid: h.pid,
        status: 'attached',
        lastHeardAt: mono(),
        cpuPercent: 0,
        rssBytes: 0,
        clockOffsetMs: null,
        rttMs: null,
        exitCode: null,
        error: '',
      },
      call,
      peerHost,
      chunkIndex,
      ready: false,
      assigned: false,
      finished: null,
      samples: [],
      readyInfo: null,
      lastShift: null,
    };
    if (h.role === 'server') this.serverSession = s;
    else this.workers.set(chunkIndex, s);
    this.update(s);
    this.note(`${id} attached from ${s.view.host} (pid ${h.pid})`);
    const sc = this.opts.scenario;
    this.send(s, { welcome: { protocolVersion: PROTOCOL_VERSION, nodeId: id, heartbeatMs: sc.heartbeatMs, silenceTimeoutMs: sc.silenceTimeout * 1000, proof: tokenProof(this.opts.token, h.nonce) } });
    // A few quick pings so an offset estimate exists before the start.
    for (let i = 0; i < 3; i++) setTimeout(() => this.send(s, { ping: { pingId: i } }), 20 * i).unref();
    if (h.role === 'server') this.send(s, { assign: { role: 'server', chunk: '', scenarioJson: JSON.stringify(sc), serverHost: '', serverPort: 0 } });
    else this.assignWorkers();
    return s;
  }

  private assignWorkers(): void {
    const srv = this.serverSession;
    if (!srv?.readyInfo) return;
    const sc = this.opts.scenario;
    const port = sc.transport === 'http' ? srv.readyInfo.httpPort : srv.readyInfo.grpcPort;
    let host = srv.readyInfo.host;
    if (host === '0.0.0.0' || host === '::' || host === '') host = srv.peerHost;
    for (const w of this.workers.values()) {
      if (w.assigned) continue;
      w.assigned = true;
      this.send(w, { assign: { role: 'worker', chunk: w.view.chunk, scenarioJson: JSON.stringify(sc), serverHost: host, serverPort: port } });
    }
  }

  private message(s: Session, m: NodeMessage): void {
    s.view.lastHeardAt = mono();
    if (s.view.status === 'missing') {
      s.view.status = this.opts.store.phase === 'running' ? 'running' : s.ready ? 'ready' : 'attached';
      this.note(`${s.view.id} is back`);
      this.update(s);
    }
    if (m.ready) {
      s.ready = true;
      s.readyInfo = { host: m.ready.host, httpPort: m.ready.httpPort, grpcPort: m.ready.grpcPort };
      s.view.status = 'ready';
      this.update(s);
      if (s.view.role === 'server') this.assignWorkers();
      this.checkBarrier();
    } else if (m.heartbeat) {
      s.view.cpuPercent = m.heartbeat.cpuPercent;
      s.view.rssBytes = m.heartbeat.rssBytes;
      s.view.loopDelayMs = m.heartbeat.loopDelayP99Ms;
      s.view.openFds = m.heartbeat.openFds;
      // A load generator at its limit measures itself: say so once per node.
      if (m.heartbeat.cpuPercent > 90 && !s.warnedCpu) {
        s.warnedCpu = true;
        this.note(`${s.view.id} is above 90 % CPU (${m.heartbeat.cpuPercent.toFixed(0)} %): its figures may be limited by the node itself, not by the system under test; spread its workers over more nodes`);
      }
      this.update(s);
    } else if (m.pong) {
      const t0 = m.pong.coordinatorSentAtMs;
      const t1 = m.pong.nodeReceivedAtMs;
      const t2 = m.sentAtMs;
      const t3 = wall();
      s.samples.push({ offset: (t1 - t0 + (t2 - t3)) / 2, rtt: Math.max(0, t3 - t0 - (t2 - t1)) });
      if (s.samples.length > 16) s.samples.shift();
      const best = s.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
      s.view.clockOffsetMs = Math.round(best.offset * 1000) / 1000;
      s.view.rttMs = Math.round(best.rtt * 1000) / 1000;
    } else if (m.snapshot) {
      const data = JSON.parse(m.snapshot.json) as Record<string, unknown>;
      if (s.view.role === 'worker') this.opts.store.apply({ type: 'workerSnapshot', snapshot: data as unknown as WorkerSnapshotIn });
      else if (Array.isArray(data.rounds) && data.rounds.length) {
        this.opts.store.apply({ type: 'rounds', rounds: data.rounds as RoundLine[] });
        for (const line of data.rounds as RoundLine[]) this.roundOpened(line.round + 1);
      }
    } else if (m.finished) {
      s.finished = { exitCode: m.finished.exitCode, json: m.finished.json, error: m.finished.error };
      s.view.exitCode = m.finished.exitCode;
      s.view.error = m.finished.error;
      s.view.status = m.finished.exitCode === 0 ? 'finished' : 'failed';
      this.update(s);
      if (m.finished.exitCode !== 0) this.note(`${s.view.id} failed: ${m.finished.error}`);
      // The report is in: ending our side tells the node it may go.
      if (!s.call.writableEnded) s.call.end();
      if (s.view.role === 'worker' && m.finished.exitCode !== 0 && !this.stopping) {
        this.fail(`${s.view.id} failed: ${m.finished.error}`);
      } else if (s.view.role === 'server' && !this.stopping) {
        this.fail(`the server node stopped before the run ended: ${m.finished.error || `exit code ${m.finished.exitCode}`}`);
      } else {
        this.checkEnd();
      }
    } else if (m.log) {
      this.note(`${s.view.id}: ${m.log.text}`);
    } else if (m.fault) {
      if (m.fault.kind === 'fired') this.fireFault(m.fault.faultId, s);
      else if (m.fault.kind === 'applied') {
        const a = JSON.parse(m.fault.json) as { kind: string; target: string; backend: string; affected: number; durationMs: number };
        this.opts.store.apply({ type: 'faultApplied', instanceId: m.fault.faultId, chunk: s.view.chunk, at: mono(), ...a });
      } else if (m.fault.kind === 'instance') {
        const r = JSON.parse(m.fault.json) as FaultInstanceReport;
        this.faultReports.push(r);
        this.opts.store.apply({ type: 'faultReport', report: r, at: mono() });
        const rec = r.nextRoundAfterHealMs === null ? '' : `, next round with them ${(r.nextRoundAfterHealMs / 1000).toFixed(2)} s after the heal`;
        this.note(`fault ${r.faultId}#${r.instance} on chunk ${r.chunk}: ${r.kind} on ${r.affected} workers via ${r.backend}: ${r.verdict}${rec}`);
      }
    }
  }

  private streamClosed(s: Session, how: string): void {
    if (s.finished || s.view.status === 'lost') {
      this.checkEnd();
      return;
    }
    this.lost(s, `${how} without a final report`);
  }

  // ---- run phases ------------------------------------------------------------------------

  private checkBarrier(): void {
    if (this.opts.store.phase !== 'waiting' || !this.serverSession?.ready) return;
    for (let n = 1; n <= this.k; n++) if (!this.workers.get(n)?.ready) return;
    this.sendClockCorrections();
    this.opts.store.apply({ type: 'phase', phase: 'running', at: mono() });
    this.note(`all ${this.k + 1} nodes ready: starting ${this.opts.scenario.workers} workers`);
    const at = wall();
    for (const s of this.sessions()) {
      s.view.status = 'running';
      this.update(s);
      this.send(s, { start: { atMs: at } });
    }
    for (const f of this.opts.scenario.faults) {
      if (f.trigger.type === 'time') this.timers.push(setTimeout(() => this.fireFault(`${f.id}#1`, null), f.trigger.atMs));
    }
    this.roundOpened(1);
  }

  private checkEnd(): void {
    if (this.done || this.opts.store.phase !== 'running' || this.stopping) return;
    for (const w of this.workers.values()) if (!w.finished && w.view.status !== 'lost') return;
    void this.finishRun(null);
  }

  private fail(reason: string): void {
    if (this.done || this.stopping) return;
    this.note(`run failed: ${reason}`);
    void this.finishRun(reason);
  }

  /** Stops the server last (its final report carries the round figures), then resolves. */
  private async finishRun(failure: string | null): Promise<void> {
    this.stopping = true;
    this.opts.store.apply({ type: 'phase', phase: 'finishing', at: mono() });
    const live = this.sessions().filter((s) => !s.finished && s.view.status !== 'lost');
    for (const s of live) if (s.view.role === 'worker') this.send(s, { stop: { reason: failure ?? 'run complete' } });
    await this.waitFinished(live.filter((s) => s.view.role === 'worker'), 5000);
    const srv = this.serverSession;
    if (srv && !srv.finished && srv.view.status !== 'lost') {
      this.send(srv, { stop: { reason: failure ?? 'run complete' } });
      await this.waitFinished([srv], 5000);
    }
    for (const s of this.sessions()) if (!s.call.writableEnded && !s.call.cancelled) s.call.end();
    this.done = true;
    this.opts.store.apply({ type: 'phase', phase: 'done', at: mono() });
    const parse = <T>(s: Session | null): T | null => {
      if (!s?.finished?.json) return null;
      try {
        return JSON.parse(s.finished.json) as T;
      } catch {
        return null;
      }
    };
    this.resultResolve({
      failure,
      faults: [...this.faultReports],
      server: srv ? { view: { ...srv.view }, report: parse<ServerReport>(srv) } : null,
      workers: [...this.workers.values()].sort((a, b) => a.chunkIndex - b.chunkIndex).map((w) => ({ view: { ...w.view }, report: parse<WorkerNodeReport>(w) })),
      startedAtMs: this.opts.store.startedAt,
      endedAtMs: mono(),
    });
  }

  private waitFinished(sessions: Session[], timeoutMs: number): Promise<void> {
    const t0 = mono();
    return new Promise((resolve) => {
      const check = () => {
        if (sessions.every((s) => s.finished || s.view.status === 'lost' || s.call.cancelled) || mono() - t0 > timeoutMs) resolve();
        else setTimeout(check, 25);
      };
      check();
    });
  }

  /** Round and time triggers are the coordinator's; every worker node applies to its own targets. */
  private roundOpened(round: number): void {
    for (const f of this.opts.scenario.faults) {
      const t = f.trigger;
      if (t.type !== 'round' || t.round !== round) continue;
      const fire = () => this.fireFault(`${f.id}#1`, null);
      if (t.delayMs > 0) this.timers.push(setTimeout(fire, t.delayMs));
      else fire();
    }
  }

  /** Sends fault instance "id#n" to every worker node but the one where it fired (it applied it already). */
  private fireFault(instanceId: string, origin: Session | null): void {
    if (this.done || this.stopping || this.firedHere.has(instanceId)) return;
    this.firedHere.add(instanceId);
    this.note(`fault ${instanceId} fired${origin ? ` on ${origin.view.id}` : ''}`);
    for (const w of this.workers.values()) {
      if (w === origin || w.finished || w.view.status === 'lost') continue;
      this.send(w, { fault: { faultId: instanceId, action: 'fire' } });
    }
  }

  private lost(s: Session, why: string): void {
    if (s.view.status === 'lost' || s.finished) return;
    s.view.status = 'lost';
    s.view.error = why;
    this.update(s);
    this.note(`${s.view.id} (${s.view.host}, pid ${s.view.pid}) lost: ${why}`);
    if (this.done || this.stopping) return;
    if (this.opts.store.phase === 'waiting') {
      // Before the start a node may come back: free its place.
      if (s === this.serverSession) this.serverSession = null;
      else if (this.workers.get(s.chunkIndex) === s) this.workers.delete(s.chunkIndex);
      return;
    }
    if (s.view.role === 'server') this.fail(`the server node was lost: ${why}`);
    else if (this.opts.scenario.onNodeLoss === 'fail') this.fail(`${s.view.id} was lost: ${why}`);
    else this.checkEnd();
  }

  private tick(): void {
    if (this.done) return;
    const hb = this.opts.scenario.heartbeatMs;
    const lostMs = this.opts.scenario.lostAfter * 1000;
    const now = mono();
    for (const s of this.sessions()) {
      if (s.finished || s.view.status === 'lost') continue;
      const age = now - s.view.lastHeardAt;
      if (age > lostMs) this.lost(s, `no heartbeat for ${(age / 1000).toFixed(1)} s`);
      else if (age > 3 * hb && s.view.status !== 'missing') {
        s.view.status = 'missing';
        this.update(s);
        this.note(`${s.view.id} missing: no heartbeat for ${(age / 1000).toFixed(1)} s`);
      }
    }
  }

  private pingAll(): void {
    for (const s of this.sessions()) if (!s.finished && s.view.status !== 'lost') this.send(s, { ping: { pingId: Math.floor(wall()) } });
  }

  /** Propagation crosses clocks (server publish → worker receipt): tell each worker node the shift. */
  private sendClockCorrections(): void {
    const srv = this.serverSession?.view.clockOffsetMs;
    if (srv === null || srv === undefined) return;
    for (const w of this.workers.values()) {
      const off = w.view.clockOffsetMs;
      if (off === null || w.finished) continue;
      const shift = srv - off;
      if (w.lastShift !== null && Math.abs(w.lastShift - shift) < 0.5) continue;
      w.lastShift = shift;
      this.send(w, { clock: { propagationShiftMs: shift } });
    }
  }

  private missingText(): string {
    const missing: string[] = [];
    const waitingReady: string[] = [];
    if (!this.serverSession) missing.push('the server node');
    else if (!this.serverSession.ready) waitingReady.push('the server node');
    for (let n = 1; n <= this.k; n++) {
      const w = this.workers.get(n);
      const name = `worker ${formatChunk({ n, k: this.k })}`;
      if (!w) missing.push(name);
      else if (!w.ready) waitingReady.push(`${name} (${w.view.host})`);
    }
    const parts: string[] = [];
    if (missing.length) parts.push(`never attached: ${missing.join(', ')}`);
    if (waitingReady.length) parts.push(`attached but not ready: ${waitingReady.join(', ')}`);
    return parts.join('; ') || 'every node was ready';
  }

  private sessions(): Session[] {
    return [...(this.serverSession ? [this.serverSession] : []), ...this.workers.values()];
  }

  private update(s: Session): void {
    this.opts.store.apply({ type: 'node', node: s.view });
  }

  private note(text: string): void {
    this.opts.log(text);
    this.opts.store.apply({ type: 'notable', text });
  }
}
