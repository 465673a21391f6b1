/**
 * `fedsim deploy k8s`: the manifests of one run on Kubernetes (docs/multi-host.md).
 *
 * - a Namespace (Pod Security level: privileged when worker nodes need NET_ADMIN, else restricted);
 * - the run token in a Secret, read by every container as FEDSIM_TOKEN;
 * - the scenario file in a ConfigMap, mounted into the coordinator, which hands it to the nodes;
 * - the coordinator as a Pod with a Service for its control port; its run directory is on an
 *   emptyDir, held after the run for `kubectl cp` (the Pod turns Ready when the run has ended);
 * - the server node as a Job with a Service for its HTTP and gRPC ports; it advertises the
 *   Service's name (`--advertise`), so workers reach it through the Service;
 * - the worker nodes as an Indexed Job, one pod per chunk: `--chunk-from-env
 *   "JOB_COMPLETION_INDEX of K"` turns the pod's index into its chunk.
 *
 * The server is a Job, not a Deployment: it ends with the run, and a Deployment would restart
 * it against a coordinator that is gone.
 */
// Types only (erased when compiled): the manifests are checked field by field against the
// Kubernetes API's own types; the tests validate them against its OpenAPI schemas.
import type { IPodFailurePolicy, IJob } from 'kubernetes-models/batch/v1';
import type {
  IConfigMap,
  IContainer,
  IEnvVar,
  INamespace,
  IPod,
  IPodSpec,
  IResourceRequirements,
  ISecret,
  ISecurityContext,
  IService,
  IVolume,
} from 'kubernetes-models/v1';
import type { Scenario } from '../config/settings.js';
import { UsageError } from '../errors.js';
import { type DeployScenario, type KernelBackend, deployName, kernelBackends } from './plan.js';
import { type NodeResources, runResources } from './resources.js';

/** Where the image (deploy/docker/Dockerfile) puts the single executable. */
export const IMAGE_BINARY = '/usr/local/bin/fedsim';
export const CONTROL_PORT = 7070;
export const HTTP_PORT = 7071;
export const GRPC_PORT = 7072;
/** The coordinator's mounts: the scenario (ConfigMap) and the run directory (emptyDir). */
export const SCENARIO_PATH = '/etc/fedsim/scenario.yaml';
export const RESULTS_DIR = '/results';
/** What unpacked files of the binary (onnxruntime) go to: an emptyDir, writable by any user. */
const CACHE_DIR = '/cache';
/** The user of containers that need no kernel backend (the "nonroot" uid of distroless images). */
const NONROOT_UID = 65532;
const TOKEN_KEY = 'token';
const INDEX_ENV = 'JOB_COMPLETION_INDEX';

export interface K8sOptions {
  readonly namespace: string;
  readonly image: string;
  /** The run token, generated per `fedsim deploy` invocation. */
  readonly token: string;
  /** Seconds the coordinator Pod keeps its run directory after the run, for `kubectl cp`. */
  readonly holdSeconds: number;
  readonly version: string;
}

/** One document of the output. */
export type Manifest = INamespace | ISecret | IConfigMap | IService | IPod | IJob;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export function checkNamespace(ns: string): string {
  if (ns.length > 63 || !DNS_LABEL.test(ns)) {
    throw new UsageError(`--namespace "${ns}" is not a Kubernetes namespace name: lower-case letters, digits and "-", at most 63, starting and ending with a letter or digit`);
  }
  return ns;
}

export function checkImage(image: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._\-/:@]*$/.test(image)) throw new UsageError(`--image "${image}" is not an image reference: e.g. registry.example.com/fedsim:0.1.0`);
  return image;
}

/**
 * The coordinator's wrapper (the image has /bin/sh): run the coordinator, pass SIGTERM on
 * to it, write its exit code to /results/exit-code (the readiness probe waits for that
 * file), then keep the run directory for FEDSIM_RESULTS_HOLD seconds and exit with the
 * coordinator's code. No `$(`: Kubernetes would expand it in a command.
 */
const COORDINATOR_SCRIPT = [
  'stop=0',
  `trap 'stop=1; kill -TERM "$pid" 2>/dev/null' TERM INT`,
  `${IMAGE_BINARY} "$@" &`,
  'pid=$!',
  'wait "$pid"; rc=$?',
  'while kill -0 "$pid" 2>/dev/null; do wait "$pid"; rc=$?; done',
  `echo "$rc" > ${RESULTS_DIR}/exit-code`,
  '[ "$stop" = 1 ] && exit "$rc"',
  `echo "fedsim deploy: the coordinator exited with code $rc; ${RESULTS_DIR}/run stays here for $FEDSIM_RESULTS_HOLD s (kubectl cp)" >&2`,
  `trap 'exit "$rc"' TERM INT`,
  'sleep "$FEDSIM_RESULTS_HOLD" &',
  'wait $!',
  'exit "$rc"',
].join('\n');

function labels(base: string, version: string, component?: string): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'fedsim',
    'app.kubernetes.io/instance': base,
    'app.kubernetes.io/version': version,
    'app.kubernetes.io/managed-by': 'fedsim-deploy',
    ...(component ? { 'app.kubernetes.io/component': component } : {}),
  };
}

function selector(base: string, component: string): Record<string, string> {
  return { 'app.kubernetes.io/instance': base, 'app.kubernetes.io/component': component };
}

function resources(r: NodeResources): IResourceRequirements {
  return { requests: { cpu: r.cpu, memory: `${r.memoryMiB}Mi` }, limits: { memory: `${r.memoryLimitMiB}Mi` } };
}

/**
 * Kernel fault backends need root and NET_ADMIN in the worker's pod; netem also needs
 * SYS_ADMIN, for the throwaway network namespace its probe makes (src/netem/tc.ts). Every
 * other container runs as a non-root user with no capabilities at all.
 */
function securityContext(kernel: ReadonlySet<KernelBackend>): ISecurityContext {
  if (kernel.size === 0) {
    return { runAsNonRoot: true, runAsUser: NONROOT_UID, runAsGroup: NONROOT_UID, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };
  }
  return { runAsNonRoot: false, runAsUser: 0, capabilities: { add: kernel.has('netem') ? ['NET_ADMIN', 'SYS_ADMIN'] : ['NET_ADMIN'] } };
}

function env(base: string, extra: IEnvVar[] = []): IEnvVar[] {
  return [
    { name: 'FEDSIM_TOKEN', valueFrom: { secretKeyRef: { name: `${base}-token`, key: TOKEN_KEY } } },
    { name: 'XDG_CACHE_HOME', value: CACHE_DIR },
    ...extra,
  ];
}

/** Shared by every pod: no API access, no Service variables (they would start with FEDSIM_), the default seccomp profile. */
function podSpec(containers: IContainer[], volumes: IVolume[]): IPodSpec {
  return {
    restartPolicy: 'Never',
    enableServiceLinks: false,
    automountServiceAccountToken: false,
    securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
    containers,
    volumes: [{ name: 'cache', emptyDir: {} }, ...volumes],
  };
}

/** A node that is refused by the coordinator (exit 2: wrong token, run already started) fails its Job at once. */
function failOnUsage(container: string): IPodFailurePolicy {
  return { rules: [{ action: 'FailJob', onExitCodes: { containerName: container, operator: 'In', values: [2] } }] };
}

/** The manifests, in the order `kubectl apply` should create them. */
export function k8sManifests(d: DeployScenario, o: K8sOptions): Manifest[] {
  const sc: Scenario = d.scenario;
  const base = deployName(sc.name);
  const ns = checkNamespace(o.namespace);
  const image = checkImage(o.image);
  const kernel = kernelBackends(sc);
  const res = runResources(sc);
  const k = sc.nodes;
  const meta = (name: string, component?: string) => ({ name, namespace: ns, labels: labels(base, o.version, component) });
  const coordinatorAddr = `${base}-coordinator.${ns}.svc:${CONTROL_PORT}`;
  const serverHost = `${base}-server.${ns}.svc`;
  const cacheMount = { name: 'cache', mountPath: CACHE_DIR };
  const docs: Manifest[] = [];

  if (ns !== 'default') {
    docs.push({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: ns, labels: { ...labels(base, o.version), 'pod-security.kubernetes.io/enforce': kernel.size > 0 ? 'privileged' : 'restricted' } },
    });
  }
  docs.push({ apiVersion: 'v1', kind: 'Secret', metadata: meta(`${base}-token`), type: 'Opaque', stringData: { [TOKEN_KEY]: o.token } });
  docs.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: meta(`${base}-scenario`), data: { 'scenario.yaml': d.text } });

  // The coordinator: its Service answers while the Pod is not Ready (it turns Ready at the end).
  docs.push({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: meta(`${base}-coordinator`, 'coordinator'),
    spec: {
      selector: selector(base, 'coordinator'),
      publishNotReadyAddresses: true,
      ports: [{ name: 'control', port: CONTROL_PORT, targetPort: 'control', protocol: 'TCP' }],
    },
  });
  docs.push({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: meta(`${base}-coordinator`, 'coordinator'),
    spec: podSpec(
      [
        {
          name: 'coordinator',
          image,
          imagePullPolicy: 'IfNotPresent',
          command: ['/bin/sh', '-c', COORDINATOR_SCRIPT, 'fedsim'],
          args: ['coordinator', '--listen', `0.0.0.0:${CONTROL_PORT}`, '--scenario', SCENARIO_PATH, '--out', `${RESULTS_DIR}/run`, '--headless'],
          env: env(base, [{ name: 'FEDSIM_RESULTS_HOLD', value: String(o.holdSeconds) }]),
          ports: [{ name: 'control', containerPort: CONTROL_PORT, protocol: 'TCP' }],
          readinessProbe: { exec: { command: ['cat', `${RESULTS_DIR}/exit-code`] }, periodSeconds: 5 },
          resources: resources(res.coordinator),
          securityContext: securityContext(new Set()),
          volumeMounts: [
            { name: 'scenario', mountPath: SCENARIO_PATH.slice(0, SCENARIO_PATH.lastIndexOf('/')), readOnly: true },
            { name: 'results', mountPath: RESULTS_DIR },
            cacheMount,
          ],
        },
      ],
      [
        { name: 'scenario', configMap: { name: `${base}-scenario` } },
        { name: 'results', emptyDir: {} },
      ],
    ),
  });

  // The server node: bound to every address of its pod, advertised by its Service's name.
  docs.push({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: meta(`${base}-server`, 'server'),
    spec: {
      selector: selector(base, 'server'),
      ports: [
        { name: 'http', port: HTTP_PORT, targetPort: 'http', protocol: 'TCP' },
        { name: 'grpc', port: GRPC_PORT, targetPort: 'grpc', protocol: 'TCP' },
      ],
    },
  });
  docs.push({
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: meta(`${base}-server`, 'server'),
    spec: {
      completions: 1,
      parallelism: 1,
      backoffLimit: 2,
      podFailurePolicy: failOnUsage('server'),
      template: {
        metadata: { labels: labels(base, o.version, 'server') },
        spec: podSpec(
          [
            {
              name: 'server',
              image,
              imagePullPolicy: 'IfNotPresent',
              command: [IMAGE_BINARY],
              args: ['node', '--role', 'server', '--coordinator', coordinatorAddr, '--host', '0.0.0.0', '--http-port', String(HTTP_PORT), '--grpc-port', String(GRPC_PORT), '--advertise', serverHost],
              env: env(base),
              ports: [
                { name: 'http', containerPort: HTTP_PORT, protocol: 'TCP' },
                { name: 'grpc', containerPort: GRPC_PORT, protocol: 'TCP' },
              ],
              resources: resources(res.server),
              securityContext: securityContext(new Set()),
              volumeMounts: [cacheMount],
            },
          ],
          [],
        ),
      },
    },
  });

  // The worker nodes: pod i of the Indexed Job runs chunk i+1 of k. Each pod has a network
  // namespace of its own, so the nodes are --isolated (fault backend auto may use the kernel).
  docs.push({
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: meta(`${base}-workers`, 'worker'),
    spec: {
      completionMode: 'Indexed',
      completions: k,
      parallelism: k,
      backoffLimit: 2 * k,
      podFailurePolicy: failOnUsage('worker'),
      template: {
        metadata: { labels: labels(base, o.version, 'worker') },
        spec: podSpec(
          [
            {
              name: 'worker',
              image,
              imagePullPolicy: 'IfNotPresent',
              command: [IMAGE_BINARY],
              args: ['node', '--role', 'worker', '--coordinator', coordinatorAddr, '--chunk-from-env', `${INDEX_ENV} of ${k}`, '--isolated'],
              env: env(base),
              resources: resources(res.worker),
              securityContext: securityContext(kernel),
              volumeMounts: [cacheMount],
            },
          ],
          [],
        ),
      },
    },
  });
  return docs;
}

/** The commands that run the manifests and bring the results back, as the YAML's leading comment. */
export function k8sHeader(d: DeployScenario, o: K8sOptions): string {
  const base = deployName(d.scenario.name);
  const ns = o.namespace;
  const pod = `${base}-coordinator`;
  const kernel = [...kernelBackends(d.scenario)];
  return [
    `# fedsim run "${d.scenario.name}" on Kubernetes: ${d.scenario.workers} workers in ${d.scenario.nodes} worker nodes, written by \`fedsim deploy k8s\` ${o.version}`,
    `# from ${d.file}. Image ${o.image} (deploy/docker/Dockerfile). Worker nodes ${kernel.length ? `get root and NET_ADMIN for the ${kernel.join(' and ')} fault backend` : 'need no kernel fault backend'}.`,
    '#',
    '#   kubectl apply -f THIS_FILE',
    `#   kubectl -n ${ns} logs -f ${pod}    (progress lines, then the summary table)`,
    `#   kubectl -n ${ns} wait --for=condition=Ready pod/${pod} --timeout=24h    (Ready: the run has ended)`,
    `#   kubectl -n ${ns} exec ${pod} -- cat ${RESULTS_DIR}/exit-code    (0 passed, 1 failed, 99 a threshold failed)`,
    `#   kubectl -n ${ns} cp ${pod}:${RESULTS_DIR}/run ./${base}-run    (summary.json, report.html, ...; within ${o.holdSeconds} s of the end)`,
    '#   kubectl delete -f THIS_FILE',
    '',
  ].join('\n');
}
