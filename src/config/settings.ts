import { UsageError } from '../errors.js';
import { parsePayload, parseTrain } from './payload.js';
import type { FaultSpec } from '../netem/spec.js';
import { checkBackendRequest } from '../netem/choose.js';
import type { RampPlan } from '../sim/ramp.js';
import { parseIntFlag, parseNumberFlag, parseRange } from './values.js';

/**
 * Every setting of a run, once: its scenario key, flag, environment variable, type,
 * default and help. The CLI options, the YAML schema, the FEDSIM_* variables and the
 * precedence (flags > environment > file > defaults) are all derived from this table.
 */
export interface Scenario {
  name: string;
  workers: number;
  nodes: number;
  rounds: number;
  transport: 'http' | 'grpc';
  payload: string;
  globalPayload: string | null;
  updatePayload: string | null;
  trainMs: string;
  train: string;
  onnxThreads: number;
  validateModel: 'off' | 'on';
  minWorkers: number | null;
  roundTimeout: number | null;
  pollTimeout: number;
  retries: number;
  retryBaseMs: number;
  retryMaxMs: number;
  requestTimeout: number;
  keepalive: number;
  keepaliveTimeout: number;
  seed: number;
  heartbeatMs: number;
  lostAfter: number;
  silenceTimeout: number;
  onNodeLoss: 'fail' | 'continue';
  expectTimeout: number;
  faultBackend: 'auto' | 'proxy' | 'iptables' | 'netem';
  recoveryTarget: number;
  faultWatchdog: number;
  handFaults: 'auto' | 'on' | 'off';
  authScheme: 'session' | 'ed25519';
  handFaultDuration: number;
  handDelay: number;
  /** Workers join in steps (docs/scenario.md, "Ramps"): "STEP:MAX[:HOLD]" or "N1,N2,…[:HOLD]"; null: all from the start. */
  ramp: string | null;
  rampHold: number;
  /** The fault plan: the file's `faults:` list plus the `--cut-*` flags (docs/faults.md). */
  faults: FaultSpec[];
}

type Kind = 'int' | 'number' | 'string' | 'enum' | 'range' | 'payload' | 'ramp';

export interface SettingDef {
  readonly key: Exclude<keyof Scenario, 'faults'>;
  readonly kind: Kind;
  readonly default: string | number | null;
  readonly help: string;
  readonly min?: number;
  readonly max?: number;
  readonly choices?: readonly string[];
  /** Unit shown in help: "s", "ms". */
  readonly unit?: string;
}

export const SETTINGS: readonly SettingDef[] = [
  { key: 'name', kind: 'string', default: 'default', help: 'name of the run (shown in reports)' },
  { key: 'workers', kind: 'int', default: 200, min: 1, help: 'simulated workers in the whole run' },
  { key: 'nodes', kind: 'int', default: 2, min: 1, max: 4096, help: 'worker nodes (chunks)' },
  { key: 'rounds', kind: 'int', default: 5, min: 1, help: 'rounds each worker completes' },
  { key: 'transport', kind: 'enum', default: 'http', choices: ['http', 'grpc'], help: 'long-poll HTTP or gRPC' },
  { key: 'payload', kind: 'payload', default: 'string', help: 'string, bytes:SIZE (e.g. bytes:1MiB) or mobilenetv2 (a random MobileNetV2 as ONNX, about 14 MB), both ways' },
  { key: 'globalPayload', kind: 'payload', default: null, help: 'what the server publishes, when it differs from payload (string, bytes:SIZE, mobilenetv2)' },
  { key: 'updatePayload', kind: 'payload', default: null, help: 'what workers send back, when it differs from payload' },
  { key: 'trainMs', kind: 'range', default: '10..50', unit: 'ms', help: 'simulated training time per round, uniform in A..B' },
  { key: 'train', kind: 'string', default: 'sleep', help: 'the training phase after the trainMs sleep: sleep (nothing more) or onnx:STEPS (STEPS forward passes of the held mobilenetv2 model in onnxruntime)' },
  { key: 'onnxThreads', kind: 'int', default: 1, min: 1, max: 64, help: 'onnxruntime threads per worker node (one session runs at a time per node)' },
  { key: 'validateModel', kind: 'enum', default: 'off', choices: ['off', 'on'], help: 'on: workers also load each received mobilenetv2 model in onnxruntime (once per version per node)' },
  { key: 'minWorkers', kind: 'int', default: null, min: 1, help: 'with roundTimeout: close a round with this many updates after the deadline' },
  { key: 'roundTimeout', kind: 'number', default: null, min: 0, unit: 's', help: 'seconds before a round may close on the quorum' },
  { key: 'pollTimeout', kind: 'number', default: 25, min: 0.05, unit: 's', help: 'seconds a model long-poll is held before an empty answer' },
  { key: 'retries', kind: 'int', default: 5, min: 0, max: 100, help: 'retries of a failed request' },
  { key: 'retryBaseMs', kind: 'number', default: 100, min: 1, unit: 'ms', help: 'first backoff (doubles each retry, full jitter)' },
  { key: 'retryMaxMs', kind: 'number', default: 2000, min: 1, unit: 'ms', help: 'longest backoff' },
  { key: 'keepalive', kind: 'number', default: 10, min: 0.1, unit: 's', help: 'worker connections: gRPC keepalive ping interval and TCP keepalive idle time (a black-holed link is noticed after about keepalive + keepaliveTimeout)' },
  { key: 'keepaliveTimeout', kind: 'number', default: 5, min: 0.1, unit: 's', help: 'a gRPC keepalive ping unanswered this long ends the connection; fedsim\'s gRPC server may leave the connection of an update first in line for its slot unread for up to 0.25 s, so keep this well above that' },
  { key: 'requestTimeout', kind: 'number', default: 60, min: 0.1, unit: 's', help: 'seconds without an answer before a request fails (above pollTimeout)' },
  { key: 'seed', kind: 'int', default: 1, min: 0, help: 'seed of jitter and payload randomness' },
  { key: 'heartbeatMs', kind: 'number', default: 1000, min: 50, unit: 'ms', help: 'node heartbeat interval; missing after 3 missed beats' },
  { key: 'lostAfter', kind: 'number', default: 10, min: 0.1, unit: 's', help: 'seconds without a beat before a node is lost' },
  { key: 'silenceTimeout', kind: 'number', default: 15, min: 0.1, unit: 's', help: 'a node exits when the coordinator is silent this long' },
  { key: 'onNodeLoss', kind: 'enum', default: 'fail', choices: ['fail', 'continue'], help: 'what a lost node does to the run' },
  { key: 'expectTimeout', kind: 'number', default: 60, min: 0.1, unit: 's', help: 'seconds to wait for all expected nodes before failing' },
  { key: 'faultBackend', kind: 'enum', default: 'auto', choices: ['auto', 'proxy', 'iptables', 'netem'], help: 'how faults reach the network path (auto: the most faithful one available)' },
  { key: 'recoveryTarget', kind: 'number', default: 10, min: 0, unit: 's', help: 'heal → next round with the affected workers above this is recovered-slow' },
  { key: 'handFaults', kind: 'enum', default: 'auto', choices: ['auto', 'on', 'off'], help: 'faults by hand from the terminal UI keys (d, b, l per chunk); auto: on with the terminal UI. On, workers connect through their fault proxies' },
  { key: 'authScheme', kind: 'enum', default: 'session', choices: ['session', 'ed25519'], help: 'safe mode (--keys): session: the registration is signed with ed25519 and opens a session, later requests carry a MAC (keyed BLAKE2b-256) under its key; ed25519: every request is signed' },
  { key: 'handFaultDuration', kind: 'number', default: 10, min: 0.1, unit: 's', help: 'how long a fault by hand lasts (h heals it sooner)' },
  { key: 'handDelay', kind: 'number', default: 200, min: 1, unit: 'ms', help: 'the delay a hand delay fault (l) adds' },
  { key: 'faultWatchdog', kind: 'number', default: 30, min: 0.1, unit: 's', help: 'no progress this long after a heal is stuck' },
  { key: 'ramp', kind: 'ramp', default: null, help: 'add workers in steps: STEP:MAX[:HOLD] (STEP, 2·STEP, … MAX) or a list N1,N2,…[:HOLD]; sets workers to the last step and rounds to steps × hold' },
  { key: 'rampHold', kind: 'int', default: 3, min: 1, help: 'rounds each ramp step is held (when ramp does not say)' },
];

/** "250:4000[:3]" (STEP:MAX[:HOLD]) or "250,500,1000[:3]" → the steps and the hold (default `hold`). */
export function parseRamp(text: string, what: string, hold: number): { steps: number[]; hold: number } {
  const bad = (why: string) => new UsageError(`${what} "${text}" ${why}: write STEP:MAX[:HOLD] (e.g. 250:4000:3) or a list N1,N2,…[:HOLD] (e.g. 100,200,400:2)`);
  const t = text.replace(/\s+/g, '');
  const int = (x: string) => {
    if (!/^\d+$/.test(x) || Number(x) < 1) throw bad(`has "${x}" where a whole number of at least 1 belongs`);
    return Number(x);
  };
  const parts = t.split(':');
  let steps: number[];
  if (parts[0].includes(',')) {
    if (parts.length > 2) throw bad('has too many colons');
    steps = parts[0].split(',').map(int);
    if (parts[1] !== undefined) hold = int(parts[1]);
  } else {
    if (parts.length < 2 || parts.length > 3) throw bad('is not STEP:MAX[:HOLD]');
    const step = int(parts[0]);
    const max = int(parts[1]);
    if (max < step) throw bad(`ends (${max}) below its step (${step})`);
    if (Math.ceil(max / step) > 1000) throw bad('has more than 1000 steps');
    steps = [];
    for (let n = step; n < max; n += step) steps.push(n);
    steps.push(max);
    if (parts[2] !== undefined) hold = int(parts[2]);
  }
  for (let i = 1; i < steps.length; i++) if (steps[i] <= steps[i - 1]) throw bad('must grow at every step');
  return { steps, hold };
}

/** The ramp of a resolved scenario (null: every worker from round 1). */
export function rampPlanOf(sc: Pick<Scenario, 'ramp' | 'rampHold' | 'nodes'>): RampPlan | null {
  if (sc.ramp === null) return null;
  const { steps, hold } = parseRamp(sc.ramp, 'ramp', sc.rampHold);
  return { steps, hold, nodes: sc.nodes };
}

export const flagOf = (key: string) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
export const envOf = (key: string) => `FEDSIM_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;

/** Parses one value given as text (a flag or an environment variable) or as YAML data. */
export function parseSetting(def: SettingDef, raw: unknown, what: string): string | number {
  const text = typeof raw === 'string' ? raw : String(raw);
  switch (def.kind) {
    case 'int':
      return parseIntFlag(text, what, def.min ?? 0, def.max);
    case 'number': {
      const v = parseNumberFlag(text, what, def.min ?? 0);
      if (def.max !== undefined && v > def.max) throw new UsageError(`${what} ${v} must be at most ${def.max}`);
      return v;
    }
    case 'enum':
      if (!def.choices!.includes(text)) throw new UsageError(`${what} "${text}" is not allowed: use ${def.choices!.join(' or ')}`);
      return text;
    case 'range':
      parseRange(text, what);
      return text;
    case 'payload':
      parsePayload(text, what);
      return text;
    case 'ramp': {
      // A YAML list [250, 500, 1000] arrives as an array.
      const t = Array.isArray(raw) ? raw.join(',') : text;
      parseRamp(t, what, 1);
      return t.replace(/\s+/g, '');
    }
    case 'string':
      return text;
  }
}

export function defaults(): Scenario {
  return { ...(Object.fromEntries(SETTINGS.map((d) => [d.key, d.default])) as unknown as Scenario), faults: [] };
}

/** Checks that hold across settings. `where` names the source of each key for the message. */
export function checkScenario(s: Scenario, where: (key: keyof Scenario) => string): Scenario {
  if (s.nodes > s.workers) throw new UsageError(`${where('nodes')} ${s.nodes} is more than ${where('workers')} ${s.workers}: each node needs at least one worker`);
  if ((s.minWorkers === null) !== (s.roundTimeout === null)) {
    throw new UsageError(`${where('minWorkers')} and ${where('roundTimeout')} go together: a round closes with M updates once S seconds have passed`);
  }
  if (s.minWorkers !== null && s.minWorkers > s.workers) throw new UsageError(`${where('minWorkers')} ${s.minWorkers} is more than ${where('workers')} ${s.workers}`);
  if (s.onNodeLoss === 'continue' && s.minWorkers === null) {
    throw new UsageError(`${where('onNodeLoss')} continue needs a quorum (minWorkers and roundTimeout): without it no round can close once a node's workers are gone`);
  }
  const onnx = parseTrain(s.train, where('train')) > 0;
  if ((onnx || s.validateModel === 'on') && parsePayload(s.globalPayload ?? s.payload).kind !== 'mobilenetv2') {
    throw new UsageError(`${onnx ? `${where('train')} onnx` : `${where('validateModel')} on`} needs the mobilenetv2 model from the server: set ${where('payload')} (or globalPayload) to mobilenetv2`);
  }
  for (const [i, f] of s.faults.entries()) checkBackendRequest(f, s.faultBackend, `faults[${i}] (${f.id})`);
  if (s.ramp !== null && s.minWorkers !== null) {
    const first = parseRamp(s.ramp, where('ramp'), s.rampHold).steps[0];
    if (s.minWorkers > first) throw new UsageError(`${where('minWorkers')} ${s.minWorkers} is more than the first ramp step (${first} workers): no round of that step could close on the quorum`);
  }
  if (s.requestTimeout <= s.pollTimeout) {
    throw new UsageError(`${where('requestTimeout')} ${s.requestTimeout} must be above ${where('pollTimeout')} ${s.pollTimeout}, or every long-poll would time out`);
  }
  return s;
}
