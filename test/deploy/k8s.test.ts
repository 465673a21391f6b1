/**
 * `fedsim deploy k8s`: the manifests it prints validate against the Kubernetes API's
 * OpenAPI schemas (kubernetes-models), hang together (names, labels, selectors, ports, the
 * token Secret, the scenario ConfigMap), map the Indexed Job's indexes to the chunks exactly
 * once, give NET_ADMIN only where a kernel fault backend needs it, size memory by the
 * documented formula, and run: the manifests' own commands, as local processes, complete a run.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { Job } from 'kubernetes-models/batch/v1';
import { ConfigMap, Namespace, Pod, Secret, Service } from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';
import { chunkFromEnv } from '../../src/config/chunk.js';
import { IMAGE_BINARY } from '../../src/deploy/k8s.js';
import { ROOT, exited, runCli, startCli, tempDir, waitForEvent } from '../helpers/cli.js';

type Doc = { kind: string; apiVersion: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: unknown };
type Container = {
  name: string;
  command?: string[];
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }>;
  ports?: Array<{ name: string; containerPort: number }>;
  resources: { requests: { memory: string; cpu: string }; limits: { memory: string } };
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; capabilities?: { add?: string[]; drop?: string[] } };
  volumeMounts?: Array<{ name: string; mountPath: string }>;
};
type PodSpec = { containers: Container[]; volumes?: Array<{ name: string; configMap?: { name: string } }> };

const dir = tempDir('fedsim-deploy-k8s-');
after(() => rmSync(dir, { recursive: true, force: true }));

function scenarioFile(name: string, text: string): string {
  const f = path.join(dir, `${name}.yaml`);
  writeFileSync(f, text);
  return f;
}

const MODELS: Record<string, new (data: never) => { validate(): void }> = { Namespace, Secret, ConfigMap, Service, Pod, Job };

async function deploy(file: string, extra: string[] = []): Promise<{ docs: Doc[]; text: string }> {
  const r = await runCli(['deploy', 'k8s', '--scenario', file, ...extra]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /fedsim deploy: 8 manifests|fedsim deploy: 7 manifests/);
  const parsed = parseAllDocuments(r.stdout);
  const docs = (Array.isArray(parsed) ? parsed : [parsed]).map((d) => {
    assert.equal(d.errors.length, 0, String(d.errors[0]));
    return d.toJS() as Doc;
  });
  // Every document against the API's OpenAPI schema of its kind.
  for (const d of docs) {
    const Model = MODELS[d.kind];
    assert.ok(Model, `unexpected kind ${d.kind}`);
    new Model(d as never).validate();
  }
  return { docs, text: r.stdout };
}

const one = (docs: Doc[], kind: string, component?: string): Doc => {
  const found = docs.filter((d) => d.kind === kind && (component === undefined || d.metadata.labels?.['app.kubernetes.io/component'] === component));
  assert.equal(found.length, 1, `${kind} ${component ?? ''}: ${found.length}`);
  return found[0];
};
const podOf = (d: Doc): PodSpec => (d.kind === 'Pod' ? (d.spec as PodSpec) : ((d.spec as { template: { spec: PodSpec } }).template.spec));
const templateLabels = (d: Doc): Record<string, string> => (d.kind === 'Pod' ? d.metadata.labels! : (d.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels);
const argOf = (args: string[], flag: string): string => {
  const i = args.indexOf(flag);
  assert.ok(i >= 0 && i + 1 < args.length, `${flag} in ${args.join(' ')}`);
  return args[i + 1];
};
const mib = (q: string): number => {
  const m = /^(\d+)Mi$/.exec(q);
  assert.ok(m, q);
  return Number(m[1]);
};

/** What every run's manifests must hold, whatever the scenario. */
function checkRun(docs: Doc[], o: { ns: string; base: string; nodes: number; scenarioText: string }): { worker: Container; server: Container; coordinator: Container } {
  assert.deepEqual(docs.map((d) => d.kind).sort(), ['ConfigMap', 'Job', 'Job', 'Namespace', 'Pod', 'Secret', 'Service', 'Service'].filter((k) => o.ns !== 'default' || k !== 'Namespace'));
  for (const d of docs) {
    assert.match(d.metadata.name, /^[a-z]([-a-z0-9]*[a-z0-9])?$/, `${d.kind} name`);
    assert.ok(d.metadata.name.length <= 63, d.metadata.name);
    if (d.kind === 'Namespace') assert.equal(d.metadata.name, o.ns);
    else {
      assert.equal(d.metadata.namespace, o.ns, `${d.kind} ${d.metadata.name}`);
      assert.ok(d.metadata.name.startsWith(`${o.base}-`), d.metadata.name);
      assert.equal(d.metadata.labels?.['app.kubernetes.io/instance'], o.base);
    }
  }

  // The token: one Secret, and every container reads it as FEDSIM_TOKEN.
  const secret = one(docs, 'Secret') as Doc & { stringData: Record<string, string> };
  const containers = docs.filter((d) => d.kind === 'Pod' || d.kind === 'Job').flatMap((d) => podOf(d).containers);
  assert.equal(containers.length, 3);
  for (const c of containers) {
    const ref = c.env?.find((e) => e.name === 'FEDSIM_TOKEN')?.valueFrom?.secretKeyRef;
    assert.ok(ref, `${c.name} reads FEDSIM_TOKEN from a Secret`);
    assert.equal(ref.name, secret.metadata.name);
    assert.match(secret.stringData[ref.key] ?? '', /^[A-Za-z0-9_-]{20,}$/, `the Secret holds key ${ref.key}`);
    assert.ok(!JSON.stringify(c).includes(secret.stringData[ref.key]), `${c.name} does not carry the token itself`);
  }

  // The scenario: the ConfigMap holds the file as it is, mounted where the coordinator reads it.
  const cm = one(docs, 'ConfigMap') as Doc & { data: Record<string, string> };
  const coordPod = one(docs, 'Pod', 'coordinator');
  const coordinator = podOf(coordPod).containers[0];
  const scenarioPath = argOf(coordinator.args!, '--scenario');
  assert.equal(cm.data[path.basename(scenarioPath)], o.scenarioText);
  const vol = podOf(coordPod).volumes!.find((v) => v.configMap?.name === cm.metadata.name);
  assert.ok(vol, 'the coordinator pod mounts the scenario ConfigMap');
  assert.equal(coordinator.volumeMounts!.find((m) => m.name === vol.name)?.mountPath, path.dirname(scenarioPath));
  // The coordinator runs the image's binary under the shell wrapper.
  assert.deepEqual(coordinator.command!.slice(0, 2), ['/bin/sh', '-c']);
  assert.ok(coordinator.command![2].includes(`${IMAGE_BINARY} "$@"`));
  assert.ok(!coordinator.command![2].includes('$('), 'no $( in a command: Kubernetes would expand it');
  assert.equal(coordinator.args![0], 'coordinator');

  // Services select the pods they front, on ports the containers name.
  const coordSvc = one(docs, 'Service', 'coordinator') as Doc & { spec: { selector: Record<string, string>; ports: Array<{ port: number; targetPort: string }> } };
  const serverSvc = one(docs, 'Service', 'server') as Doc & { spec: { selector: Record<string, string>; ports: Array<{ name: string; port: number; targetPort: string }> } };
  const serverJob = one(docs, 'Job', 'server');
  const workerJob = one(docs, 'Job', 'worker') as Doc & { spec: { completionMode: string; completions: number; parallelism: number } };
  for (const [svc, workload] of [[coordSvc, coordPod], [serverSvc, serverJob]] as const) {
    for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(templateLabels(workload)[k], v, `${svc.metadata.name} selects ${k}`);
    const c = podOf(workload).containers[0];
    for (const p of svc.spec.ports) assert.ok(c.ports?.some((cp) => cp.name === p.targetPort && cp.containerPort === p.port), `${svc.metadata.name} port ${p.port}`);
  }
  assert.notEqual(templateLabels(workerJob)['app.kubernetes.io/component'], serverSvc.spec.selector['app.kubernetes.io/component'], 'the server Service does not select worker pods');

  // Nodes dial the coordinator's Service; the server advertises its own Service's name.
  const server = podOf(serverJob).containers[0];
  const worker = podOf(workerJob).containers[0];
  const controlPort = coordSvc.spec.ports[0].port;
  assert.equal(argOf(coordinator.args!, '--listen'), `0.0.0.0:${controlPort}`);
  for (const c of [server, worker]) {
    assert.deepEqual(c.command, [IMAGE_BINARY]);
    assert.equal(argOf(c.args!, '--coordinator'), `${coordSvc.metadata.name}.${o.ns}.svc:${controlPort}`);
  }
  assert.equal(argOf(server.args!, '--role'), 'server');
  assert.equal(argOf(server.args!, '--host'), '0.0.0.0');
  assert.equal(argOf(server.args!, '--advertise'), `${serverSvc.metadata.name}.${o.ns}.svc`);
  assert.equal(Number(argOf(server.args!, '--http-port')), serverSvc.spec.ports.find((p) => p.name === 'http')!.port);
  assert.equal(Number(argOf(server.args!, '--grpc-port')), serverSvc.spec.ports.find((p) => p.name === 'grpc')!.port);

  // Workers: pod i of the Indexed Job runs chunk i+1 of k, each chunk exactly once.
  assert.equal(workerJob.spec.completionMode, 'Indexed');
  assert.equal(workerJob.spec.completions, o.nodes);
  assert.equal(workerJob.spec.parallelism, o.nodes);
  assert.equal(argOf(worker.args!, '--role'), 'worker');
  assert.ok(worker.args!.includes('--isolated'), 'each worker pod has a network namespace of its own');
  const spec = argOf(worker.args!, '--chunk-from-env');
  const chunks = Array.from({ length: o.nodes }, (_, i) => chunkFromEnv(spec, { JOB_COMPLETION_INDEX: String(i) }));
  assert.deepEqual(chunks.map((c) => c.k), Array(o.nodes).fill(o.nodes));
  assert.deepEqual(chunks.map((c) => c.n).sort((a, b) => a - b), Array.from({ length: o.nodes }, (_, i) => i + 1));
  assert.equal(new Set(chunks.map((c) => c.n)).size, o.nodes);
  assert.throws(() => chunkFromEnv(spec, { JOB_COMPLETION_INDEX: String(o.nodes) }), /outside 0\.\./);

  // Limits are twice the requests; no CPU limit.
  for (const c of containers) {
    assert.equal(mib(c.resources.limits.memory), 2 * mib(c.resources.requests.memory), c.name);
    assert.equal((c.resources.limits as Record<string, string>).cpu, undefined, `${c.name}: no CPU limit`);
  }
  return { worker, server, coordinator };
}

/** Containers that were given capabilities, by name. */
function added(docs: Doc[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const d of docs.filter((x) => x.kind === 'Pod' || x.kind === 'Job')) {
    for (const c of podOf(d).containers) if (c.securityContext?.capabilities?.add) out[c.name] = [...c.securityContext.capabilities.add].sort();
  }
  return out;
}

test('deploy k8s: the reference scenario (4 nodes, gRPC, 1 MiB): valid manifests, chunks, token, resources by the formula', async () => {
  const file = path.join(ROOT, 'examples', 'reference-1000.yaml');
  const { docs, text } = await deploy(file, ['--namespace', 'load-test', '--image', 'registry.example.com/fedsim:0.1.0']);
  const { worker, server, coordinator } = checkRun(docs, { ns: 'load-test', base: 'fedsim-reference-1000', nodes: 4, scenarioText: readFileSync(file, 'utf8') });
  assert.deepEqual(added(docs), {}, 'no fault: no capability anywhere');
  for (const c of [worker, server, coordinator]) {
    assert.equal(c.securityContext?.runAsNonRoot, true, c.name);
    assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], c.name);
  }
  assert.equal(one(docs, 'Namespace').metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted');
  assert.ok(text.includes('image: registry.example.com/fedsim:0.1.0'));
  // docs/multi-host.md: worker 128 + 250 × (192 KiB + 3 × (1 + 1) MiB) = 1674.75 → 1675 MiB;
  // server 160 + 1000 × (64 KiB + 1 MiB) + 2 × (1 + 1) MiB = 1226.5 → 1227 MiB; coordinator 192 + 4 × 2 = 200 MiB.
  assert.equal(worker.resources.requests.memory, '1675Mi');
  assert.equal(worker.resources.limits.memory, '3350Mi');
  assert.equal(server.resources.requests.memory, '1227Mi');
  assert.equal(coordinator.resources.requests.memory, '200Mi');
  // The commands to get the results are in the header.
  assert.match(text, /kubectl -n load-test cp fedsim-reference-1000-coordinator:\/results\/run /);
  // A token per invocation.
  const again = await deploy(file, ['--namespace', 'load-test']);
  const token = (d: Doc[]) => (one(d, 'Secret') as Doc & { stringData: { token: string } }).stringData.token;
  assert.notEqual(token(docs), token(again.docs));
});

test('deploy k8s: one node, mobilenetv2 over HTTP with proxy faults, in the default namespace', async () => {
  const text = 'name: Mobile Net_V2 (tiny)\nworkers: 3\nnodes: 1\nrounds: 2\npayload: mobilenetv2\ntrainMs: 0\nfaults:\n  - id: slow\n    kind: delay\n    delay: 100ms\n    onRound: 1\n    duration: 1s\n    target: one\n';
  const { docs } = await deploy(scenarioFile('mobile', text), ['--namespace', 'default']);
  const { worker, server } = checkRun(docs, { ns: 'default', base: 'fedsim-mobile-net-v2-tiny', nodes: 1, scenarioText: text });
  assert.deepEqual(added(docs), {}, 'one worker: the proxy carries it, no capability');
  // 14 MB models: worker 128 + 3 × (64 KiB + 2 × 28 MB) + 3 × 64 KiB ≈ 289 MiB; server 160 + 3 × 16 KiB + 2 × 28 MB ≈ 214 MiB.
  assert.equal(worker.resources.requests.memory, '289Mi');
  assert.equal(server.resources.requests.memory, '214Mi');
  const string = await deploy(scenarioFile('string', 'name: s\nworkers: 3\nnodes: 1\n'));
  assert.ok(mib(worker.resources.requests.memory) > mib(podOf(one(string.docs, 'Job', 'worker')).containers[0].resources.requests.memory));
});

test('deploy k8s: iptables and netem faults give NET_ADMIN to the worker nodes only', async () => {
  const cases: Array<[string, string, string[]]> = [
    ['iptables', 'faultBackend: iptables\nfaults:\n  - id: cut\n    kind: blackhole\n    onRound: 2\n    duration: 2s\n    target: chunk 2\n', ['NET_ADMIN']],
    ['auto-blackhole', 'faults:\n  - id: cut\n    kind: reset\n    onRound: 2\n    duration: 2s\n    target: all\n', ['NET_ADMIN']],
    ['auto-delay', 'faults:\n  - id: slow\n    kind: delay\n    delay: 200ms\n    onRound: 2\n    duration: 2s\n    target: server\n', ['NET_ADMIN', 'SYS_ADMIN']],
    ['proxy', 'faultBackend: proxy\nfaults:\n  - id: cut\n    kind: blackhole\n    onRound: 2\n    duration: 2s\n    target: chunk 2\n', []],
    ['auto-one', 'faults:\n  - id: cut\n    kind: blackhole\n    onPhase: sending\n    duration: 2s\n    target: chunk 2 one\n', []],
  ];
  for (const [name, faults, caps] of cases) {
    const text = `name: caps-${name}\nworkers: 70\nnodes: 7\nrounds: 3\n${faults}`;
    const { docs } = await deploy(scenarioFile(name, text));
    const { worker } = checkRun(docs, { ns: 'fedsim', base: `fedsim-caps-${name}`, nodes: 7, scenarioText: text });
    assert.deepEqual(added(docs), caps.length ? { worker: caps } : {}, name);
    assert.equal(one(docs, 'Namespace').metadata.labels?.['pod-security.kubernetes.io/enforce'], caps.length ? 'privileged' : 'restricted', name);
    if (caps.length) assert.equal(worker.securityContext?.runAsUser, 0, `${name}: the kernel backends need root`);
  }
});

test('deploy k8s: names are DNS labels whatever the scenario name', async () => {
  const long = 'A'.repeat(40) + ' x '.repeat(20);
  const { docs } = await deploy(scenarioFile('long', `name: "${long}"\nworkers: 2\nnodes: 2\n`));
  for (const d of docs) assert.ok(d.metadata.name.length <= 63 && /^[a-z]([-a-z0-9]*[a-z0-9])?$/.test(d.metadata.name), d.metadata.name);
  const digits = await deploy(scenarioFile('digits', 'name: "1000-workers"\nworkers: 2\nnodes: 1\n'));
  assert.equal(one(digits.docs, 'Pod').metadata.name, 'fedsim-1000-workers-coordinator');
});

test('the Dockerfile builds the image the manifests expect', () => {
  const docker = readFileSync(path.join(ROOT, 'deploy', 'docker', 'Dockerfile'), 'utf8');
  const lines = docker.split('\n').filter((l) => l && !l.startsWith('#'));
  assert.match(lines[0], /^FROM debian:bookworm-slim$/);
  assert.ok(lines.some((l) => /^COPY (--chmod=0?755 )?dist\/fedsim \/usr\/local\/bin\/fedsim$/.test(l)), 'copies the single executable of npm run build');
  assert.ok(lines.includes(`ENTRYPOINT ["${IMAGE_BINARY}"]`));
  assert.match(docker, /apt-get install[^\n]*\biptables\b[^\n]*\biproute2\b/);
  // The build context is the repository root; only the binary goes to the builder.
  const ignore = readFileSync(path.join(ROOT, 'deploy', 'docker', 'Dockerfile.dockerignore'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
  assert.deepEqual(ignore, ['*', '!dist/fedsim']);
  // scripts/build-sea.js writes dist/fedsim by default.
  assert.match(readFileSync(path.join(ROOT, 'scripts', 'build-sea.js'), 'utf8'), /out: path\.join\(ROOT, 'dist', 'fedsim'\)/);
});

const procs: ChildProcess[] = [];
after(() => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});


/** `args` with the value after `flag` replaced. */
function withArg(args: string[], flag: string, value: string): string[] {
  const out = [...args];
  out[out.indexOf(flag) + 1] = value;
  return out;
}

test("deploy k8s: the manifests' commands, run here as processes, complete a run (chunks from the index, server advertised by name)", async () => {
  // An iptables fault with --dry-run: the workers resolve the advertised name for the kernel rules.
  const text = 'name: local\nworkers: 12\nnodes: 3\nrounds: 3\ntrainMs: 0..5\nfaults:\n  - id: cut\n    kind: blackhole\n    backend: iptables\n    onRound: 2\n    duration: 0.2s\n    target: chunk 3\n';
  const { docs } = await deploy(scenarioFile('local', text));
  const token = (one(docs, 'Secret') as Doc & { stringData: { token: string } }).stringData.token;
  const coordinator = podOf(one(docs, 'Pod', 'coordinator')).containers[0];
  const server = podOf(one(docs, 'Job', 'server')).containers[0];
  const worker = podOf(one(docs, 'Job', 'worker')).containers[0];
  // The ConfigMap's file where the pod would mount it; the run directory where the emptyDir would be.
  const scenario = path.join(dir, 'mounted-scenario.yaml');
  writeFileSync(scenario, (one(docs, 'ConfigMap') as Doc & { data: Record<string, string> }).data['scenario.yaml']);
  const out = path.join(dir, 'local-run');
  const env = { FEDSIM_TOKEN: token };
  let cargs = withArg(coordinator.args!, '--listen', '127.0.0.1:0');
  cargs = withArg(withArg(cargs, '--scenario', scenario), '--out', out);
  const c = startCli(cargs, env);
  procs.push(c);
  const cdone = exited(c, 90_000);
  const ev = await waitForEvent(c, 'listening');
  const addr = `127.0.0.1:${ev.controlPort}`;
  let sargs = withArg(server.args!, '--coordinator', addr);
  sargs = withArg(withArg(withArg(withArg(sargs, '--host', '127.0.0.1'), '--http-port', '0'), '--grpc-port', '0'), '--advertise', 'localhost');
  const nodes = [startCli(sargs, env)];
  // Indexes in reverse order of arrival: each pod still gets the chunk of its index.
  for (const i of [2, 0, 1]) nodes.push(startCli([...withArg(worker.args!, '--coordinator', addr), '--dry-run'], { ...env, JOB_COMPLETION_INDEX: String(i) }));
  procs.push(...nodes);
  const ends = nodes.map((p) => exited(p));
  const res = await cdone;
  assert.equal(res.code, 0, res.stderr);
  const [s, ...w] = await Promise.all(ends);
  assert.equal(s.code, 0, s.stderr);
  [3, 1, 2].forEach((n, i) => {
    assert.equal(w[i].code, 0, w[i].stderr);
    assert.match(w[i].stderr, new RegExp(`worker node ${n} of 3: assigned by the coordinator; server localhost:\\d+`));
  });
  // The kernel rules of chunk 3 name the address the name resolved to.
  assert.match(w[0].stderr, /dry-run: iptables -w -A FEDSIM-\S+ .*-d 127\.0\.0\.1 --dport \d+ .*-j DROP/);
  const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
  assert.equal(summary.status, 'passed');
  assert.equal(summary.updates.accepted, 36);
  assert.deepEqual(summary.perChunk.map((x: { chunk: string; workers: number }) => `${x.chunk}:${x.workers}`), ['1 of 3:4', '2 of 3:4', '3 of 3:4']);
});
