import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import { LineCounter, parseDocument, isMap, isScalar, type Document } from 'yaml';
import { UsageError } from '../errors.js';
import { type FaultSpec, parseFault } from '../netem/spec.js';
import { type Threshold, parseThresholdFlag, parseThresholdMap } from '../report/thresholds.js';
import { type Scenario, SETTINGS, type SettingDef, checkScenario, defaults, envOf, flagOf, parseRamp, parseSetting } from './settings.js';

/** The JSON Schema of a scenario file, derived from the settings table (published in docs/scenario.md). */
export function scenarioJsonSchema(): Record<string, unknown> {
  const typeOf = (d: SettingDef): Record<string, unknown> => {
    switch (d.kind) {
      case 'int':
        return { type: 'integer', ...(d.min !== undefined ? { minimum: d.min } : {}), ...(d.max !== undefined ? { maximum: d.max } : {}) };
      case 'number':
        return { type: 'number', ...(d.min !== undefined ? { minimum: d.min } : {}) };
      case 'enum':
        return { type: 'string', enum: [...d.choices!] };
      case 'range':
        return { type: ['string', 'number'] };
      case 'ramp':
        return { type: ['string', 'array'], items: { type: 'integer', minimum: 1 } };
      default:
        return { type: 'string' };
    }
  };
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'fedsim scenario',
    type: 'object',
    additionalProperties: false,
    properties: {
      ...Object.fromEntries(SETTINGS.map((d) => [d.key, { ...typeOf(d), description: d.help }])),
      faults: { type: 'array', items: { type: 'object' }, description: 'the fault plan (docs/faults.md)' },
      thresholds: { type: 'object', description: 'pass/fail criteria over the run figures (docs/thresholds.md)' },
    },
  };
}

let compiled: ReturnType<Ajv['compile']> | null = null;
/** Compiled on first use: nodes that never read a file do not pay for it. */
function validator(): ReturnType<Ajv['compile']> {
  compiled ??= new Ajv({ allErrors: false, strict: true, allowUnionTypes: true }).compile(scenarioJsonSchema());
  return compiled;
}

function lineOf(doc: Document, lc: LineCounter, key: string | undefined): number {
  if (key && isMap(doc.contents)) {
    for (const pair of doc.contents.items) {
      if (isScalar(pair.key) && pair.key.value === key && pair.key.range) return lc.linePos(pair.key.range[0]).line;
    }
  }
  return 1;
}

function explain(e: ErrorObject): { key: string | undefined; text: string } {
  const key = e.instancePath ? e.instancePath.split('/')[1] : (e.params as { additionalProperty?: string }).additionalProperty;
  if (e.keyword === 'additionalProperties') {
    const p = (e.params as { additionalProperty: string }).additionalProperty;
    return { key: p, text: `unknown key "${p}": allowed keys are ${SETTINGS.map((d) => d.key).join(', ')}, faults, thresholds` };
  }
  if (e.keyword === 'enum') return { key, text: `key "${key}" ${e.message}: ${(e.params as { allowedValues: string[] }).allowedValues.join(', ')}` };
  if (e.keyword === 'type' && !key) return { key, text: 'the file must be a YAML mapping of keys to values (see docs/scenario.md)' };
  return { key, text: `key "${key}" ${e.message}` };
}

/** Reads and validates a scenario file; errors name the file, line and key. */
export function loadScenarioFile(file: string): Partial<Record<keyof Scenario, unknown>> & { faults?: unknown[]; __lines: Record<string, number> } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`scenario file ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): check the path`);
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const err = doc.errors[0];
    const line = err.linePos?.[0].line ?? 1;
    throw new UsageError(`${file}:${line}: not valid YAML: ${err.message.split('\n')[0]}`);
  }
  const data: unknown = doc.toJS() ?? {};
  const validate = validator();
  if (!validate(data)) {
    const { key, text: why } = explain(validate.errors![0]);
    throw new UsageError(`${file}:${lineOf(doc, lc, key)}: ${why}`);
  }
  const lines: Record<string, number> = {};
  for (const k of Object.keys(data as object)) lines[k] = lineOf(doc, lc, k);
  return { ...(data as object), __lines: lines };
}

export type Source = 'flag' | 'env' | 'file' | 'default';

/** `--cut-on-log PATTERN --cut-for 20s --cut-max 1 --cut-target "chunk 2"` and friends → one fault. */
function cutFault(cut: Record<string, string | undefined> | undefined, index: number): FaultSpec | null {
  if (!cut) return null;
  const given = Object.entries(cut).filter(([, v]) => v !== undefined);
  if (given.length === 0) return null;
  const raw: Record<string, unknown> = { id: 'cut', kind: cut.cutKind ?? 'blackhole' };
  if (cut.cutOnLog !== undefined) raw.onLog = cut.cutOnLog;
  if (cut.cutLogSource !== undefined) raw.logSource = cut.cutLogSource;
  if (cut.cutOnPhase !== undefined) raw.onPhase = cut.cutOnPhase;
  if (cut.cutOnRound !== undefined) raw.onRound = cut.cutOnRound;
  if (cut.cutAt !== undefined) raw.at = cut.cutAt;
  if (cut.cutFor !== undefined) raw.duration = cut.cutFor;
  if (cut.cutMax !== undefined) raw.maxCount = Number(cut.cutMax);
  if (cut.cutTarget !== undefined) raw.target = cut.cutTarget;
  if (cut.cutDirection !== undefined) raw.direction = cut.cutDirection;
  if (cut.cutBackend !== undefined) raw.backend = cut.cutBackend;
  if (cut.cutDelay !== undefined) raw.delay = cut.cutDelay;
  if (cut.cutLoss !== undefined) raw.loss = Number(cut.cutLoss);
  if (cut.cutRate !== undefined) raw.rate = cut.cutRate;
  return parseFault(raw, index, () => '--cut-* flags: ');
}

export interface ResolveInput {
  /** Flag values as given on the command line (undefined when not given). */
  readonly flags: Partial<Record<Exclude<keyof Scenario, 'faults'>, string | undefined>>;
  /** The --cut-* flags: one more fault, after the file's. */
  readonly cut?: Record<string, string | undefined>;
  readonly env: NodeJS.ProcessEnv;
  readonly file?: string;
  /** `--threshold METRIC:EXPR` flags (added to the file's), and `--no-thresholds`. */
  readonly thresholds?: readonly string[];
  readonly noThresholds?: boolean;
}

/** Flags > FEDSIM_* environment > scenario file > defaults; every value validated where it came from. */
export function resolveScenario(input: ResolveInput): { scenario: Scenario; sources: Record<Exclude<keyof Scenario, 'faults'>, Source>; thresholds: Threshold[] } {
  const fromFile = input.file ? loadScenarioFile(input.file) : undefined;
  const out = defaults() as unknown as Record<string, unknown>;
  const sources = {} as Record<Exclude<keyof Scenario, 'faults'>, Source>;
  const where = {} as Record<Exclude<keyof Scenario, 'faults'>, string>;
  for (const def of SETTINGS) {
    const flag = input.flags[def.key];
    const env = input.env[envOf(def.key)];
    if (flag !== undefined) {
      out[def.key] = parseSetting(def, flag, flagOf(def.key));
      sources[def.key] = 'flag';
      where[def.key] = flagOf(def.key);
    } else if (env !== undefined && env !== '') {
      out[def.key] = parseSetting(def, env, envOf(def.key));
      sources[def.key] = 'env';
      where[def.key] = envOf(def.key);
    } else if (fromFile && def.key in fromFile) {
      const line = fromFile.__lines[def.key];
      where[def.key] = `${input.file}:${line}: key "${def.key}"`;
      out[def.key] = parseSetting(def, fromFile[def.key], where[def.key]);
      sources[def.key] = 'file';
    } else {
      sources[def.key] = 'default';
      where[def.key] = flagOf(def.key);
    }
  }
  if (out.ramp !== null) {
    // The ramp decides the run's workers (its last step) and rounds (steps × hold).
    const { steps, hold } = parseRamp(out.ramp as string, where.ramp, out.rampHold as number);
    const max = steps[steps.length - 1];
    const rounds = steps.length * hold;
    if (sources.workers !== 'default' && out.workers !== max) {
      throw new UsageError(`${where.ramp} "${out.ramp}" ends at ${max} workers but ${where.workers} is ${out.workers}: drop ${where.workers} (the ramp sets it) or make them agree`);
    }
    if (sources.rounds !== 'default' && out.rounds !== rounds) {
      throw new UsageError(`${where.ramp} "${out.ramp}" takes ${steps.length} steps × ${hold} rounds = ${rounds} rounds but ${where.rounds} is ${out.rounds}: drop ${where.rounds} (the ramp sets it) or make them agree`);
    }
    out.workers = max;
    out.rounds = rounds;
    out.rampHold = hold;
  }
  const faults: FaultSpec[] = [];
  if (fromFile && Array.isArray(fromFile.faults)) {
    const at = `${input.file}:${fromFile.__lines.faults}: `;
    fromFile.faults.forEach((raw, i) => faults.push(parseFault(raw, i, () => at)));
  }
  const cut = cutFault(input.cut, faults.length);
  if (cut) faults.push(cut);
  const ids = new Set<string>();
  for (const f of faults) {
    if (ids.has(f.id)) throw new UsageError(`two faults have the id "${f.id}": give each its own id`);
    ids.add(f.id);
  }
  out.faults = faults;
  const scenario = checkScenario(out as unknown as Scenario, (k) => where[k as Exclude<keyof Scenario, 'faults'>]);
  const thresholds: Threshold[] = [];
  const rawThresholds = (fromFile as { thresholds?: unknown } | undefined)?.thresholds;
  if (rawThresholds !== undefined) thresholds.push(...parseThresholdMap(rawThresholds, `${input.file}:${fromFile!.__lines.thresholds}: key "thresholds"`));
  for (const t of input.thresholds ?? []) thresholds.push(parseThresholdFlag(t));
  return { scenario, sources, thresholds: input.noThresholds ? [] : thresholds };
}
