import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { rampPlanOf } from '../config/settings.js';
import { parseChunk } from '../config/chunk.js';
import { parseTrain, payloadOf } from '../config/payload.js';
import type { Scenario } from '../config/settings.js';
import { parseHostPort, parseIntFlag, parseRange } from '../config/values.js';
import { NodeAgent } from '../control/agent.js';
import type { Assign } from '../proto/gen/control.js';
import { chunkRange } from '../config/chunk.js';
import { ProxyBackend } from '../netem/proxy/backend.js';
import { BackendSet, type Carrier, chooseBackend } from '../netem/choose.js';
import { IptablesBackend, type VirtualPorts, iptablesUnavailable, virtualPortOf, virtualPorts } from '../netem/iptables.js';
import { cleanJournals } from '../netem/journal.js';
import { NetemBackend, netemUnavailable, routeDevice } from '../netem/tc.js';
import { isRecording, recordCommands } from '../netem/exec.js';
import { type FaultBackend, FaultRunner } from '../netem/runner.js';
import type { FaultSpec } from '../netem/spec.js';
import { isTargeted, wholeNodeTarget } from '../netem/targets.js';
import { systemClock } from '../runtime/clock.js';
import type { TlsFiles } from '../control/protocol.js';
import { RunError, UsageError, exitCodeOf } from '../errors.js';
import { fedsimVersion } from '../runtime/self.js';
import type { WorkerNodeReport } from '../sim/workerStats.js';
import { type ChunkHandle, prepareChunk } from './nodeWorker.js';
import { type ServerHandle, startServer } from './nodeServer.js';
import { log } from './output.js';

export interface AgentFlags {
  role: 'server' | 'worker';
  coordinator: string;
  token?: string;
  chunk?: string;
  host: string;
  httpPort: string;
  grpcPort: string;
  maxUpdateBytes: string;
  /** (server) The host workers are told to reach this server at, instead of --host (a Service name). */
  advertise?: string;
  tlsCa?: string;
  /** Safe mode: the server's key list, or a worker node's key directory (read here, never sent over the control channel). */
  keys?: string;
}

const SNAPSHOT_MS = 200;

/**
 * A fault proxy that listens on the server's host inside the virtual port range would have
 * its workers' connections taken to the server by the DNAT rule: refuse that up front.
 */
function checkProxiesOutside(proxies: ProxyBackend, workers: readonly number[], serverHost: string, vp: VirtualPorts): void {
  for (const w of workers) {
    const at = proxies.addressOf(w);
    if (at && at.host === serverHost && at.port >= vp.base && at.port < vp.base + vp.count) {
      throw new RunError(
        `the fault proxy of worker ${w} listens on ${at.host}:${at.port}, inside the virtual ports ${vp.base}..${vp.base + vp.count - 1} of the iptables backend: ` +
          'narrow the ephemeral port range (sysctl net.ipv4.ip_local_port_range) so it leaves them out, or carry these faults with one backend',
      );
    }
  }
}

/** The address of a server advertised by name; an address stays as it is. */
async function addressOf(host: string): Promise<string> {
  if (isIP(host)) return host;
  try {
    return (await lookup(host, { family: 4 })).address;
  } catch (e) {
    throw new RunError(`cannot resolve the server's host name ${host} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): the kernel fault backends need its address`);
  }
}

/** `fedsim node --coordinator HOST:PORT`: everything else comes from the coordinator. */
export async function runAttachedNode(flags: AgentFlags, maxBodyBytes: number): Promise<number> {
  const coordinator = parseHostPort(flags.coordinator, '--coordinator');
  const httpPort = parseIntFlag(flags.httpPort, '--http-port', 0, 65535);
  const grpcPort = parseIntFlag(flags.grpcPort, '--grpc-port', 0, 65535);
  const token = flags.token ?? process.env.FEDSIM_TOKEN;
  if (!token) throw new UsageError('--token (or FEDSIM_TOKEN) is required with --coordinator: use the run token the coordinator printed');
  if (flags.chunk !== undefined && flags.role === 'worker') parseChunk(flags.chunk);
  const tls: TlsFiles = { ca: flags.tlsCa };
  if (process.env.FEDSIM_DRY_RUN === '1') {
    // Kernel fault backends print what they would run; nothing on the system changes.
    recordCommands((argv) => {
      log(`dry-run: ${argv.join(' ')}`);
      agent.log('info', `dry-run: ${argv.join(' ')}`);
      return undefined;
    });
  }
  const testVersion = process.env.FEDSIM_TEST_PROTOCOL_VERSION;

  let server: ServerHandle | null = null;
  let chunk: ChunkHandle | null = null;
  let ticker: NodeJS.Timeout | null = null;
  let runPromise: Promise<WorkerNodeReport> | null = null;
  let stopReason: string | null = null;
  let assignError: Error | null = null;
  let faults: FaultRunner | null = null;

  function faultRunner(sc: Scenario, chunkN: number, first: number, count: number, backend: FaultBackend | null): FaultRunner {
    return new FaultRunner({
      faults: sc.faults,
      chunk: { n: chunkN, k: sc.nodes, first, count, total: sc.workers },
      backend,
      clock: systemClock,
      recoveryTargetMs: sc.recoveryTarget * 1000,
      watchdogMs: sc.faultWatchdog * 1000,
      onInstance: (r) => agent.send({ fault: { kind: 'instance', faultId: `${r.faultId}#${r.instance}`, json: JSON.stringify(r) } }),
      onFired: (id, n) => agent.send({ fault: { kind: 'fired', faultId: `${id}#${n}`, json: '' } }),
      onApplied: (instanceId, info) => agent.send({ fault: { kind: 'applied', faultId: instanceId, json: JSON.stringify(info) } }),
      log: (line) => {
        log(line);
        agent.log('info', line);
      },
      onCut: (w, on, current) => chunk?.stats.setCut(w, on, current),
    });
  }
  /** The carrier of each fault on this node (docs/faults.md, "Backends"). */
  async function chooseCarriers(sc: Scenario): Promise<Map<string, Carrier>> {
    const needs = sc.faults.some((f) => (f.backend !== 'auto' ? f.backend : sc.faultBackend) !== 'proxy');
    const env = {
      iptables: needs ? await iptablesUnavailable() : 'not probed',
      netem: needs ? await netemUnavailable() : 'not probed',
      isolated: process.env.FEDSIM_NETNS !== undefined || process.env.FEDSIM_ISOLATED === '1',
    };
    if (needs && env.netem !== null) log(`fault backends: netem unavailable: ${env.netem}`);
    const choice = new Map<string, Carrier>();
    for (const f of sc.faults) choice.set(f.id, chooseBackend(f, sc.faultBackend, env));
    return choice;
  }

  let stopped!: () => void;
  const stoppedP = new Promise<void>((r) => (stopped = r));

  async function takeAssignment(a: Assign): Promise<{ host?: string; httpPort?: number; grpcPort?: number }> {
    const sc = JSON.parse(a.scenarioJson) as Scenario;
    if (a.role === 'server') {
      server = await startServer(
        {
          workers: sc.workers,
          host: flags.host,
          httpPort,
          grpcPort,
          minWorkers: sc.minWorkers ?? undefined,
          roundTimeoutMs: sc.roundTimeout === null ? undefined : sc.roundTimeout * 1000,
          pollTimeoutMs: sc.pollTimeout * 1000,
          payload: payloadOf(sc),
          maxBodyBytes,
          keys: flags.keys,
          ramp: rampPlanOf(sc),
        },
        (line) => {
          // Rounds are rare and round triggers wait on them: send each at once.
          agent.snapshot({ rounds: [line] });
          faults?.line(`round ${line.round} closed in ${line.durationMs.toFixed(1)} ms with ${line.updates} updates`, 'server');
          faults?.line(`round ${line.round + 1} opened`, 'server');
        },
      );
      // Log triggers on the server's lines fire here; the coordinator relays them to the workers' nodes.
      if (sc.faults.some((f) => f.trigger.type === 'log')) faults = faultRunner(sc, 0, 0, 0, null);
      return { host: flags.advertise ?? flags.host, httpPort: server.httpPort, grpcPort: server.grpcPort };
    }
    const c = parseChunk(a.chunk);
    const { first, count } = chunkRange(c, sc.workers);
    let proxies: ProxyBackend | null = null;
    let virtual: ((i: number) => { host: string; port: number } | undefined) | undefined;
    // The server as advertised: an address, or a name (`--advertise`, a Kubernetes Service).
    let serverHost = a.serverHost;
    if (sc.faults.length > 0) {
      const choice = await chooseCarriers(sc);
      // Kernel rules match addresses: a name is resolved once, and the workers use that address too.
      if ([...choice.values()].some((b) => b !== 'proxy')) serverHost = await addressOf(a.serverHost);
      const server = { host: serverHost, port: a.serverPort };
      const carriers: Partial<Record<Carrier, FaultBackend>> = {};
      const targetsOf = (fs: readonly FaultSpec[]) => {
        const out: number[] = [];
        for (let i = first; i < first + count; i++) if (fs.some((f) => isTargeted(f.target, i, c.n, first, count, sc.workers, f.seed))) out.push(i);
        return out;
      };
      // Only workers a proxy-carried fault can touch go through a proxy; the rest connect straight.
      const targeted = targetsOf(sc.faults.filter((f) => choice.get(f.id) === 'proxy'));
      // Workers a single-worker iptables fault can touch connect to a virtual port of their own.
      const onPorts = new Set(targetsOf(sc.faults.filter((f) => choice.get(f.id) === 'iptables' && !wholeNodeTarget(f.target))));
      const vp = onPorts.size > 0 ? virtualPorts({ first, count, total: sc.workers, serverPort: a.serverPort }) : undefined;
      // A dry run only prints the DNAT rule: there the workers connect straight.
      if (vp && !isRecording()) virtual = (i) => (onPorts.has(i) ? { host: serverHost, port: virtualPortOf(vp, i) } : undefined);
      // A worker behind a proxy and on a virtual port: the proxy goes upstream through the port.
      if (targeted.length > 0) carriers.proxy = proxies = await ProxyBackend.start(targeted, (i) => virtual?.(i) ?? server, sc.seed, 'in-process');
      if (vp && proxies) {
        try {
          checkProxiesOutside(proxies, targeted, serverHost, vp);
        } catch (e) {
          await proxies.close();
          throw e;
        }
      }
      const kernel = [...choice.values()].some((b) => b !== 'proxy');
      if (kernel) {
        // What a killed run left behind goes first.
        const cleaned = await cleanJournals();
        for (const r of cleaned.removed) log(`fault cleanup: removed ${r}`);
        for (const p of cleaned.problems) log(`fault cleanup: ${p}`);
      }
      let iptables: IptablesBackend | null = null;
      if ([...choice.values()].includes('iptables')) carriers.iptables = iptables = new IptablesBackend(server, vp);
      if ([...choice.values()].includes('netem')) {
        const dev = isRecording() ? (serverHost.startsWith('127.') ? 'lo' : 'eth0') : await routeDevice(serverHost);
        carriers.netem = new NetemBackend(server, dev);
      }
      faults = faultRunner(sc, c.n, first, count, new BackendSet(choice, carriers));
      // The DNAT of the virtual ports is in place before any worker connects (and `faults.finish()` removes it).
      if (iptables && vp) await iptables.prepare();
      const carried = sc.faults.map((f) => `${f.id} via ${choice.get(f.id)}`).join(', ');
      const ports = vp ? `; ${onPorts.size} workers on virtual ports ${vp.base}..${vp.base + vp.count - 1} (iptables per worker)` : '';
      log(`worker node ${a.chunk}: faults ${carried}; ${targeted.length} workers behind the fault proxy${ports}`);
    }
    chunk = await prepareChunk({
      chunk: c,
      workers: sc.workers,
      server: { host: serverHost, port: a.serverPort },
      transport: sc.transport,
      rounds: sc.rounds,
      trainMs: parseRange(sc.trainMs, 'trainMs'),
      payload: payloadOf(sc),
      retry: { retries: sc.retries, baseMs: sc.retryBaseMs, maxMs: sc.retryMaxMs },
      requestTimeoutMs: sc.requestTimeout * 1000,
      keepaliveMs: sc.keepalive * 1000,
      keepaliveTimeoutMs: sc.keepaliveTimeout * 1000,
      onnx: { trainSteps: parseTrain(sc.train, 'train'), threads: sc.onnxThreads, validate: sc.validateModel === 'on' },
      seed: sc.seed,
      keys: flags.keys,
      authScheme: sc.authScheme,
      failFast: sc.minWorkers === null,
      serverFor: proxies || virtual ? (i) => proxies?.addressOf(i) ?? virtual?.(i) : undefined,
      proxyFor: proxies ? (i) => proxies?.routeOf(i) : undefined,
      observer: faults ?? undefined,
      ramp: rampPlanOf(sc),
    });
    log(`worker node ${a.chunk}: assigned by the coordinator; server ${a.serverHost}:${a.serverPort}`);
    return {};
  }

  const agent: NodeAgent = new NodeAgent({
    coordinator,
    token,
    role: flags.role,
    chunk: flags.chunk,
    tls,
    fedsimVersion: fedsimVersion(),
    log,
    protocolVersion: testVersion ? Number(testVersion) : undefined,
    handlers: {
      assign: (a) =>
        takeAssignment(a).catch((e: Error) => {
          assignError = e;
          throw e;
        }),
      start() {
        if (!chunk) return;
        const c: ChunkHandle = chunk;
        const told = new Set<string>();
        ticker = setInterval(() => {
          agent.snapshot(c.snapshot());
          // Notable lines: the first error of each kind, not one line per error.
          for (const [kind, msg] of c.stats.firstErrorByKind) {
            if (told.has(kind)) continue;
            told.add(kind);
            agent.log('warn', `first ${kind} error: ${msg}`);
          }
        }, SNAPSHOT_MS);
        runPromise = c.run();
        runPromise.then(
          () => stopped(),
          () => stopped(),
        );
      },
      stop(reason) {
        stopReason = reason;
        chunk?.stop();
        stopped();
      },
      clock(shiftMs) {
        if (chunk) chunk.stats.propagationShiftMs = shiftMs;
      },
      fault(instanceId, action) {
        const m = /^(.*)#(\d+)$/.exec(instanceId);
        if (!m) return;
        if (action === 'heal') faults?.healNow(m[1], Number(m[2]));
        else faults?.fire(m[1], Number(m[2]));
      },
      pause(paused) {
        const srv = server as ServerHandle | null;
        if (!srv) return;
        srv.fl.engine.setPaused(paused);
        log(`server: new rounds ${paused ? 'paused' : 'resumed'} by the coordinator`);
      },
    },
  });

  const stopSignal = (sig: string) => {
    stopReason = `stopped by ${sig}`;
    chunk?.stop();
    stopped();
  };
  process.once('SIGTERM', () => stopSignal('SIGTERM'));
  process.once('SIGINT', () => stopSignal('SIGINT'));

  await agent.connect();
  log(`node: attached to the coordinator at ${coordinator.host}:${coordinator.port} as ${agent.welcome?.nodeId}`);

  const ended = await Promise.race([stoppedP.then(() => null), agent.ended$]);
  if (ticker) clearInterval(ticker);
  const srv = server as ServerHandle | null;
  if (ended !== null) {
    // The coordinator went away (silence, crash): stop everything here, leave nothing running.
    (chunk as ChunkHandle | null)?.stop();
    if (runPromise) await (runPromise as Promise<unknown>).catch(() => undefined);
    await srv?.stop();
    await (faults as FaultRunner | null)?.finish();
    throw new RunError(`node stopped: ${ended}`);
  }
  await (faults as FaultRunner | null)?.finish();
  if (srv) {
    const report = { ...srv.fl.report(), maxRssBytes: process.resourceUsage().maxRSS * 1024 };
    await agent.finish(0, report);
    await srv.stop();
    log(`server: stopped (${stopReason ?? 'done'}) after ${srv.fl.rounds.length} rounds`);
    agent.close();
    return 0;
  }
  if (assignError) {
    // The agent already sent the failure to the coordinator.
    agent.close();
    throw assignError;
  }
  const c = chunk as ChunkHandle | null;
  if (!c || !runPromise) {
    await agent.finish(1, null, stopReason ?? 'stopped before the start');
    agent.close();
    return (stopReason as string | null)?.startsWith('stopped by SIG') ? 1 : 0;
  }
  let code = 0;
  let report: WorkerNodeReport | null = null;
  let error = '';
  try {
    report = await (runPromise as Promise<WorkerNodeReport>);
  } catch (e) {
    report = (e as { report?: WorkerNodeReport }).report ?? null;
    error = (e as Error).message;
    code = exitCodeOf(e);
  }
  agent.snapshot(c.snapshot());
  await agent.finish(code, report, error);
  agent.close();
  if (code !== 0) throw new RunError(error);
  return 0;
}
