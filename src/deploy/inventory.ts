/**
 * The part of an Ansible inventory `fedsim deploy ansible` reads: which hosts are in the
 * groups `coordinator`, `server` and `workers`, and each worker host's `fedsim_chunks`.
 * Both inventory formats are read, as files: INI (`[group]`, `[group:vars]`,
 * `[group:children]`, `host key=value …`) and YAML (`all: {hosts, vars, children}`).
 * Host ranges (`web[01:20]`), directories and inventory scripts are not.
 */
import { readFileSync, statSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { UsageError } from '../errors.js';

type Vars = Record<string, unknown>;

interface Group {
  hosts: string[];
  children: string[];
  vars: Vars;
}

export interface Inventory {
  readonly file: string;
  /** Hosts of a group, its children's included, in the inventory's order. */
  hostsOf(group: string): string[];
  /** A host's variable: its own, else of its closest group (the deepest below `all`). */
  varOf(host: string, key: string): unknown;
}

function group(groups: Map<string, Group>, name: string): Group {
  let g = groups.get(name);
  if (!g) groups.set(name, (g = { hosts: [], children: [], vars: {} }));
  return g;
}

function addUnique(list: string[], item: string): void {
  if (!list.includes(item)) list.push(item);
}

/** `key=value key2="a b"` → vars; a value that is a number or a boolean becomes one, as Ansible does. */
function iniValue(raw: string): unknown {
  const v = /^(["'])(.*)\1$/.exec(raw)?.[2] ?? raw;
  if (v !== raw) return v;
  if (/^-?\d+$/.test(v)) return Number(v);
  if (/^(true|false)$/i.test(v)) return v.toLowerCase() === 'true';
  return v;
}

const TOKEN_RE = /[^\s=]+=(?:"[^"]*"|'[^']*'|\S*)|\S+/g;

function parseIni(file: string, text: string, groups: Map<string, Group>, hostVars: Map<string, Vars>): void {
  let section = 'ungrouped';
  let kind: 'hosts' | 'vars' | 'children' = 'hosts';
  text.split(/\r?\n/).forEach((rawLine, i) => {
    const line = rawLine.replace(/\s+[#;].*$/, '').trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const head = /^\[([^\]:]+)(?::(vars|children))?\]$/.exec(line);
    if (head) {
      section = head[1].trim();
      kind = (head[2] as 'vars' | 'children' | undefined) ?? 'hosts';
      group(groups, section);
      return;
    }
    const at = `${file}:${i + 1}`;
    if (kind === 'vars') {
      const m = /^([^=\s]+)\s*=\s*(.*)$/.exec(line);
      if (!m) throw new UsageError(`${at}: "${line}" in [${section}:vars] is not key=value`);
      group(groups, section).vars[m[1]] = iniValue(m[2]);
      return;
    }
    if (kind === 'children') {
      addUnique(group(groups, section).children, line);
      group(groups, line);
      return;
    }
    const tokens = line.match(TOKEN_RE) ?? [line];
    const host = (tokens[0] ?? line).replace(/:\d+$/, '');
    if (/\[.*:.*\]/.test(host)) throw new UsageError(`${at}: host ranges such as "${host}" are not read by fedsim deploy: list the hosts one per line`);
    addUnique(group(groups, section).hosts, host);
    const vars = hostVars.get(host) ?? {};
    for (const t of tokens.slice(1)) {
      const eq = t.indexOf('=');
      if (eq <= 0) throw new UsageError(`${at}: "${t}" after host ${host} is not key=value`);
      vars[t.slice(0, eq)] = iniValue(t.slice(eq + 1));
    }
    hostVars.set(host, vars);
  });
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseYamlInventory(file: string, text: string, groups: Map<string, Group>, hostVars: Map<string, Vars>): void {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new UsageError(`${file}: not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!isMap(doc)) throw new UsageError(`${file}: a YAML inventory is a mapping of groups (all: {hosts, vars, children})`);
  const walk = (name: string, body: unknown) => {
    const g = group(groups, name);
    if (body === null || body === undefined) return;
    if (!isMap(body)) throw new UsageError(`${file}: group "${name}" must be a mapping with hosts, vars or children`);
    if (body.hosts !== undefined && body.hosts !== null) {
      if (!isMap(body.hosts)) throw new UsageError(`${file}: hosts of group "${name}" must be a mapping of host names`);
      for (const [host, vars] of Object.entries(body.hosts)) {
        addUnique(g.hosts, host);
        if (isMap(vars)) hostVars.set(host, { ...(hostVars.get(host) ?? {}), ...vars });
      }
    }
    if (isMap(body.vars)) Object.assign(g.vars, body.vars);
    if (body.children !== undefined && body.children !== null) {
      if (!isMap(body.children)) throw new UsageError(`${file}: children of group "${name}" must be a mapping of groups`);
      for (const [child, cbody] of Object.entries(body.children)) {
        addUnique(g.children, child);
        walk(child, cbody);
      }
    }
  };
  for (const [name, body] of Object.entries(doc)) walk(name, body);
}

/** Reads an INI or YAML (`.yml`, `.yaml`, `.json`) inventory file. */
export function readInventory(file: string): Inventory {
  let text: string;
  try {
    if (statSync(file).isDirectory()) throw new UsageError(`--inventory ${file} is a directory: give one INI or YAML inventory file`);
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--inventory ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): check the path`);
  }
  const groups = new Map<string, Group>();
  const hostVars = new Map<string, Vars>();
  if (/\.(ya?ml|json)$/i.test(file)) parseYamlInventory(file, text, groups, hostVars);
  else parseIni(file, text, groups, hostVars);

  const hostsOf = (name: string, seen = new Set<string>()): string[] => {
    const g = groups.get(name);
    if (!g || seen.has(name)) return [];
    seen.add(name);
    const out = [...g.hosts];
    for (const c of g.children) for (const h of hostsOf(c, seen)) addUnique(out, h);
    return out;
  };
  // Depth of each group below the roots, so the closest group's variable wins.
  const depth = new Map<string, number>();
  const isChild = new Set([...groups.values()].flatMap((g) => g.children));
  const visit = (name: string, d: number) => {
    if ((depth.get(name) ?? -1) >= d || d > groups.size) return;
    depth.set(name, d);
    for (const c of groups.get(name)?.children ?? []) visit(c, d + 1);
  };
  for (const name of groups.keys()) if (!isChild.has(name)) visit(name, name === 'all' ? 0 : 1);

  return {
    file,
    hostsOf: (name) => hostsOf(name),
    varOf(host, key) {
      const own = hostVars.get(host);
      if (own && key in own) return own[key];
      const holding = [...groups.keys()]
        .filter((g) => g === 'all' || hostsOf(g).includes(host))
        .sort((a, b) => (depth.get(b) ?? 0) - (depth.get(a) ?? 0));
      for (const g of holding) if (key in groups.get(g)!.vars) return groups.get(g)!.vars[key];
      return undefined;
    },
  };
}

export interface HostPlan {
  readonly coordinator: string;
  readonly server: string;
  /** Worker host → its chunk numbers (1-based, contiguous, each exactly once over all hosts). */
  readonly chunks: ReadonlyMap<string, number[]>;
}

/**
 * Who runs what: the one coordinator host, the one server host, and the chunks of each
 * worker host. Without `fedsim_chunks` anywhere the `nodes` chunks are spread evenly over
 * the worker hosts (the first hosts take one more); with it, each host runs its
 * `fedsim_chunks` (default 1) and they must add up to `nodes`.
 */
export function hostPlan(inv: Inventory, nodes: number): HostPlan {
  const need = 'it needs the groups coordinator (one host), server (one host) and workers (one host or more)';
  const one = (g: string): string => {
    const hosts = inv.hostsOf(g);
    if (hosts.length === 0) throw new UsageError(`inventory ${inv.file} has no hosts in group "${g}": ${need}`);
    if (hosts.length > 1) throw new UsageError(`inventory ${inv.file} has ${hosts.length} hosts in group "${g}" (${hosts.join(', ')}): it takes exactly one`);
    return hosts[0];
  };
  const coordinator = one('coordinator');
  const server = one('server');
  const workers = inv.hostsOf('workers');
  if (workers.length === 0) throw new UsageError(`inventory ${inv.file} has no hosts in group "workers": ${need}`);

  const given = workers.map((h) => inv.varOf(h, 'fedsim_chunks'));
  let counts: number[];
  if (given.every((v) => v === undefined)) {
    if (workers.length > nodes) {
      throw new UsageError(`inventory ${inv.file} has ${workers.length} worker hosts but the scenario has ${nodes} worker nodes (nodes): list at most ${nodes} hosts in "workers", or raise nodes`);
    }
    const each = Math.floor(nodes / workers.length);
    counts = workers.map((_, i) => each + (i < nodes % workers.length ? 1 : 0));
  } else {
    counts = workers.map((h, i) => {
      const v = given[i] ?? 1;
      const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw new UsageError(`inventory ${inv.file}: fedsim_chunks of host ${h} is "${String(v)}": a whole number of at least 1`);
      return n;
    });
    const sum = counts.reduce((a, b) => a + b, 0);
    if (sum !== nodes) {
      const each = workers.map((h, i) => `${h} ${counts[i]}`).join(', ');
      throw new UsageError(`inventory ${inv.file}: the worker hosts run ${sum} chunks (${each}) but the scenario has ${nodes} worker nodes (nodes): make fedsim_chunks add up to ${nodes}`);
    }
  }
  const chunks = new Map<string, number[]>();
  let next = 1;
  workers.forEach((h, i) => {
    chunks.set(h, Array.from({ length: counts[i] }, () => next++));
  });
  return { coordinator, server, chunks };
}
