import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RunStore, StoreEvent } from '../sim/runStore.js';
import { WORKER_STATES } from '../sim/workerStats.js';

/** Buckets of fedsim_round_duration_seconds: 10 ms to 5 min. */
const ROUND_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/**
 * `--metrics-port`: the coordinator's merged figures in Prometheus text format, read from
 * the run store at each scrape (prom-client), so a Grafana that users already run can chart
 * a test while it happens. docs/metrics.md lists the series.
 */
export class MetricsEndpoint {
  readonly registry = new Registry();
  private readonly server: Server;
  private readonly unsubscribe: () => void;
  private readonly roundDuration: Histogram;

  constructor(private readonly store: RunStore, info: { name: string; transport: string; payload: string; version: string }) {
    const r = this.registry;
    const s = store;
    new Gauge({ name: 'fedsim_run_info', help: 'the run: 1, with its scenario as labels', labelNames: ['name', 'transport', 'payload', 'version'], registers: [r] })
      .labels(info.name, info.transport, info.payload, info.version)
      .set(1);
    new Gauge({
      name: 'fedsim_run_phase',
      help: '1 for the phase the run is in (waiting, running, finishing, done)',
      labelNames: ['phase'],
      registers: [r],
      collect() {
        for (const p of ['waiting', 'running', 'finishing', 'done']) this.labels(p).set(s.phase === p ? 1 : 0);
      },
    });
    new Gauge({ name: 'fedsim_workers_planned', help: 'simulated workers in the scenario', registers: [r], collect() { this.set(s.totalWorkers); } });
    new Gauge({ name: 'fedsim_rounds_planned', help: 'rounds in the scenario', registers: [r], collect() { this.set(s.totalRounds); } });
    // Store counters only grow: each scrape sets a counter to the store's figure.
    const counter = (name: string, help: string, value: () => number) =>
      new Counter({ name, help, registers: [r], collect() { this.reset(); this.inc(value()); } });
    const perChunk = (name: string, help: string, pick: (c: { messages: number; bytes: number; errors: number; retries: number }) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['chunk'],
        registers: [r],
        collect() {
          this.reset();
          for (const c of s.chunks.values()) this.labels(c.chunk).inc(pick(c));
        },
      });
    counter('fedsim_rounds_closed_total', 'rounds the server closed', () => s.rounds.length);
    counter('fedsim_updates_accepted_total', 'updates the closed rounds aggregated', () => s.rounds.reduce((a, x) => a + x.updates, 0));
    perChunk('fedsim_messages_total', 'messages the workers sent and received', (c) => c.messages);
    perChunk('fedsim_bytes_total', 'payload bytes the workers sent and received', (c) => c.bytes);
    perChunk('fedsim_errors_total', 'failed requests seen by the workers', (c) => c.errors);
    perChunk('fedsim_retries_total', 'retried requests', (c) => c.retries);
    new Gauge({
      name: 'fedsim_workers',
      help: 'workers per state and chunk',
      labelNames: ['chunk', 'state'],
      registers: [r],
      collect() {
        this.reset();
        for (const c of s.chunks.values()) for (const st of WORKER_STATES) this.labels(c.chunk, st).set(c.states[st]);
      },
    });
    this.roundDuration = new Histogram({ name: 'fedsim_round_duration_seconds', help: 'round open to close, on the server', buckets: ROUND_BUCKETS, registers: [r] });
    new Gauge({
      name: 'fedsim_last_round_duration_seconds',
      help: 'the last closed round',
      registers: [r],
      collect() {
        const last = s.rounds[s.rounds.length - 1];
        if (last) this.set(last.durationMs / 1000);
      },
    });
    new Gauge({
      name: 'fedsim_propagation_p99_seconds',
      help: 'p99 of publish to held-and-checked, for the newest version every reporting worker received',
      registers: [r],
      collect() {
        for (let i = s.rounds.length - 1; i >= 0; i--) {
          const p = s.roundRow(s.rounds[i]).propagationP99;
          if (p !== null) return void this.set(p / 1000);
        }
      },
    });
    new Gauge({
      name: 'fedsim_faults_active',
      help: 'fault instances applied and not healed',
      registers: [r],
      collect() {
        this.set([...s.faults.values()].filter((f) => f.healedAt === null).length);
      },
    });
    new Gauge({
      name: 'fedsim_faults',
      help: 'fault instances by verdict (pending: not judged yet)',
      labelNames: ['verdict'],
      registers: [r],
      collect() {
        this.reset();
        for (const f of s.faults.values()) this.labels(f.verdict ?? 'pending').inc();
      },
    });
    const perNode = (name: string, help: string, pick: (n: { cpuPercent: number; rssBytes: number; loopDelayMs?: number | null; openFds?: number | null }) => number | null | undefined) =>
      new Gauge({
        name,
        help,
        labelNames: ['node', 'role'],
        registers: [r],
        collect() {
          this.reset();
          for (const n of s.nodes.values()) {
            // Nothing before the node's first heartbeat: a zero there would read as a measurement.
            if (n.rssBytes === 0) continue;
            const v = pick(n);
            if (typeof v === 'number') this.labels(n.id, n.role).set(v);
          }
        },
      });
    perNode('fedsim_node_cpu_percent', 'CPU of the node process over the last heartbeat (100 = one core)', (n) => n.cpuPercent);
    perNode('fedsim_node_rss_bytes', 'resident memory of the node process', (n) => n.rssBytes);
    perNode('fedsim_node_event_loop_delay_seconds', 'p99 event-loop delay of the node over the last heartbeat', (n) => (typeof n.loopDelayMs === 'number' ? n.loopDelayMs / 1000 : null));
    perNode('fedsim_node_open_fds', 'open file descriptors of the node', (n) => n.openFds);
    new Gauge({
      name: 'fedsim_node_up',
      help: '1 while a node is attached, ready, running or finished; 0 when missing, lost or failed',
      labelNames: ['node', 'role', 'status'],
      registers: [r],
      collect() {
        this.reset();
        for (const n of s.nodes.values()) this.labels(n.id, n.role, n.status).set(['missing', 'lost', 'failed'].includes(n.status) ? 0 : 1);
      },
    });

    this.unsubscribe = store.subscribe((e: StoreEvent) => {
      if (e.type === 'rounds') for (const x of e.rounds) this.roundDuration.observe(x.durationMs / 1000);
    });
    this.server = createServer((req, res) => {
      const url = req.url?.split('?')[0];
      if (req.method !== 'GET' || (url !== '/metrics' && url !== '/')) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('fedsim serves its figures at /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
    });
  }

  /** Binds `host:port` (port 0 picks a free one) and returns the bound port. */
  async listen(host: string, port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(new Error(`--metrics-port ${port}: cannot listen on ${host}:${port}: ${err.message}`));
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    this.unsubscribe();
    this.server.closeAllConnections?.();
    if (this.server.listening) await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
