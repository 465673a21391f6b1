import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import os from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { ControlClient, type Assign, type CoordinatorMessage, type NodeMessage, type Welcome } from '../proto/gen/control.js';
import { RunError, UsageError } from '../errors.js';
import { CONTROL_CHANNEL_OPTIONS, PROTOCOL_VERSION, TOKEN_METADATA, type TlsFiles, channelCredentials, proofMatches } from './protocol.js';
import { formatHostPort } from '../config/values.js';

export interface AgentHandlers {
  /** Prepare the role; resolve with what Ready carries. */
  assign(a: Assign): Promise<{ host?: string; httpPort?: number; grpcPort?: number }>;
  start(): void;
  stop(reason: string): void;
  clock(shiftMs: number): void;
  /** Fire fault instance "id#n" on this node's targets, or heal it now. */
  fault(instanceId: string, action: 'fire' | 'heal'): void;
  /** (server) Hold or release the close of the open round. */
  pause(paused: boolean): void;
}

export interface AgentOptions {
  readonly coordinator: { host: string; port: number };
  readonly token: string;
  readonly role: 'server' | 'worker';
  readonly chunk?: string;
  readonly tls: TlsFiles;
  readonly fedsimVersion: string;
  readonly handlers: AgentHandlers;
  readonly log: (line: string) => void;
  /** Overrides for tests: the protocol version this node claims. */
  readonly protocolVersion?: number;
}

const wall = () => performance.timeOrigin + performance.now();

/**
 * The node's side of the control stream: hello, token check of the coordinator, assignment,
 * heartbeats, pongs, and a watchdog that stops the node when the coordinator goes silent.
 */
export class NodeAgent {
  private readonly client: InstanceType<typeof ControlClient>;
  private call: grpc.ClientDuplexStream<NodeMessage, CoordinatorMessage> | null = null;
  private runId = '';
  private lastSeq = 0;
  private lastHeard = Date.now();
  private timers: NodeJS.Timeout[] = [];
  private ended = false;
  private endResolve!: (why: string) => void;
  /** Resolves with the reason when the stream is over (stop, silence, error). */
  readonly ended$: Promise<string>;
  welcome: Welcome | null = null;

  constructor(private readonly opts: AgentOptions) {
    const { host, port } = opts.coordinator;
    const target = formatHostPort(host, port);
    this.client = new ControlClient(target, channelCredentials(opts.tls), CONTROL_CHANNEL_OPTIONS);
    this.ended$ = new Promise((resolve) => (this.endResolve = resolve));
  }

  /** Connects, says hello and checks the coordinator's proof of the token. Rejects with a clear error. */
  connect(connectTimeoutMs = 15_000): Promise<Welcome> {
    const { host, port } = this.opts.coordinator;
    const where = `the coordinator at ${host}:${port}`;
    return new Promise<Welcome>((resolve, reject) => {
      const deadline = new Date(Date.now() + connectTimeoutMs);
      this.client.waitForReady(deadline, (err) => {
        if (err) {
          reject(new RunError(`cannot reach ${where} within ${connectTimeoutMs / 1000} s (${err.message}): start \`fedsim coordinator\` there, or fix --coordinator`));
          return;
        }
        const md = new grpc.Metadata();
        md.set(TOKEN_METADATA, `Bearer ${this.opts.token}`);
        const call = this.client.attach(md);
        this.call = call;
        const nonce = randomBytes(16);
        let welcomed = false;
        call.on('data', (m: CoordinatorMessage) => {
          this.lastHeard = Date.now();
          if (!welcomed) {
            if (m.refused) {
              reject(new UsageError(`${where} refused this node: ${m.refused.reason}`));
              this.finishStream('refused');
              return;
            }
            if (!m.welcome) return;
            if (!proofMatches(this.opts.token, nonce, m.welcome.proof)) {
              reject(new UsageError(`${where} failed the run-token check: it does not hold this node's token (check --token / FEDSIM_TOKEN)`));
              this.finishStream('bad proof');
              return;
            }
            if (m.welcome.protocolVersion !== (this.opts.protocolVersion ?? PROTOCOL_VERSION)) {
              reject(new UsageError(`${where} speaks control protocol v${m.welcome.protocolVersion}, this node v${PROTOCOL_VERSION}: run the same fedsim version on every host`));
              this.finishStream('version');
              return;
            }
            welcomed = true;
            this.welcome = m.welcome;
            this.runId = m.runId;
            this.lastSeq = m.seq;
            this.startTimers(m.welcome);
            resolve(m.welcome);
            return;
          }
          this.onCommand(m);
        });
        call.on('error', (e: grpc.ServiceError) => {
          if (!welcomed) {
            if (e.code === grpc.status.UNAUTHENTICATED) reject(new UsageError(`${where} refused this node: ${e.details} (pass the token the coordinator printed with --token or FEDSIM_TOKEN)`));
            else reject(new RunError(`${where}: control stream failed: ${e.details || e.message}`));
          }
          this.finishStream(`the control stream to ${where} failed: ${e.details || e.message}`);
        });
        call.on('end', () => this.finishStream(`${where} closed the control stream`));
        this.send({
          hello: {
            protocolVersion: this.opts.protocolVersion ?? PROTOCOL_VERSION,
            fedsimVersion: this.opts.fedsimVersion,
            role: this.opts.role,
            chunk: this.opts.chunk ?? '',
            host: os.hostname(),
            pid: process.pid,
            nodeName: '',
            nonce,
          },
        });
      });
    });
  }

  send(body: Omit<NodeMessage, 'sentAtMs'>): void {
    if (!this.call || this.ended) return;
    this.call.write({ sentAtMs: wall(), ...body });
  }

  snapshot(json: unknown): void {
    this.send({ snapshot: { json: JSON.stringify(json) } });
  }

  log(level: string, text: string): void {
    this.send({ log: { level, text } });
  }

  /** Sends the final report and waits for the coordinator to take it. */
  finish(exitCode: number, report: unknown, error = ''): Promise<void> {
    this.send({ finished: { exitCode, json: JSON.stringify(report ?? null), error } });
    // No half-close here: grpc-js may deliver a half-close before the last message, and
    // the coordinator would take the node for lost. The coordinator ends the stream once
    // it holds the report.
    // The coordinator ends the stream once it has the report; wait for that (bounded).
    return Promise.race([this.ended$.then(() => undefined), new Promise<void>((r) => setTimeout(r, 10_000).unref())]);
  }

  close(): void {
    this.finishStream('closed');
  }

  private onCommand(m: CoordinatorMessage): void {
    if (m.runId !== this.runId || m.seq <= this.lastSeq) {
      this.opts.log(`agent: dropped a stale command (run ${m.runId.slice(0, 8)}, seq ${m.seq}; current run ${this.runId.slice(0, 8)}, seq ${this.lastSeq})`);
      return;
    }
    this.lastSeq = m.seq;
    const h = this.opts.handlers;
    if (m.ping) {
      this.send({ pong: { pingId: m.ping.pingId, coordinatorSentAtMs: m.sentAtMs, nodeReceivedAtMs: wall() } });
    } else if (m.assign) {
      const a = m.assign;
      h.assign(a).then(
        (r) => this.send({ ready: { host: r.host ?? '', httpPort: r.httpPort ?? 0, grpcPort: r.grpcPort ?? 0 } }),
        (e: Error) => {
          this.opts.log(`agent: could not take the assignment: ${e.message}`);
          void this.finish(e instanceof UsageError ? 2 : 1, null, e.message);
          h.stop(e.message);
        },
      );
    } else if (m.start) {
      h.start();
    } else if (m.stop) {
      h.stop(m.stop.reason);
    } else if (m.clock) {
      h.clock(m.clock.propagationShiftMs);
    } else if (m.fault) {
      h.fault(m.fault.faultId, m.fault.action === 'heal' ? 'heal' : 'fire');
    } else if (m.pause) {
      h.pause(m.pause.paused);
    }
  }

  private startTimers(w: Welcome): void {
    const beat = Math.max(50, w.heartbeatMs);
    this.timers.push(
      setInterval(() => {
        const mem = process.memoryUsage.rss();
        const delay = loop.percentile(99) / 1e6;
        loop.reset();
        this.send({ heartbeat: { cpuPercent: cpuPercent(), rssBytes: mem, loopDelayP99Ms: Number.isFinite(delay) ? Math.round(delay * 10) / 10 : 0, openFds: openFds() } });
      }, beat),
    );
    const silence = Math.max(beat * 3, w.silenceTimeoutMs);
    this.timers.push(
      setInterval(() => {
        const quiet = Date.now() - this.lastHeard;
        if (quiet > silence) {
          this.opts.log(`agent: the coordinator has been silent for ${(quiet / 1000).toFixed(1)} s (limit ${silence / 1000} s): stopping`);
          this.finishStream(`the coordinator was silent for ${(quiet / 1000).toFixed(1)} s`);
        }
      }, Math.min(1000, beat)),
    );
  }

  private finishStream(why: string): void {
    if (this.ended) return;
    this.ended = true;
    for (const t of this.timers) clearInterval(t);
    try {
      this.call?.cancel();
    } catch {
      /* already closed */
    }
    this.client.close();
    this.endResolve(why);
  }
}

/** Event-loop delay, sampled every 20 ms (a node whose loop lags measures late). */
const loop = monitorEventLoopDelay({ resolution: 20 });
loop.enable();

/** Open file descriptors of this process (Linux: /proc/self/fd); 0 where that is not readable. */
function openFds(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
}

let lastCpu = process.cpuUsage();
let lastAt = performance.now();
function cpuPercent(): number {
  const now = performance.now();
  const used = process.cpuUsage(lastCpu);
  const pct = ((used.user + used.system) / 1000 / Math.max(1, now - lastAt)) * 100;
  lastCpu = process.cpuUsage();
  lastAt = now;
  return Math.round(pct * 10) / 10;
}
