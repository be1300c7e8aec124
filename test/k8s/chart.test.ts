import fs from 'node:fs';
import path from 'node:path';
import { SHUTDOWN_TIMEOUT_MS } from '@baton/engine';
import {
  ALL_APIS,
  CHART,
  HELM,
  KNOWN_FIELDS,
  ROOT,
  find,
  functionFolders,
  helmTemplate,
  helmTemplateError,
  helmNotes,
  helmTemplateOnCluster,
  matchesSelector,
  ofKind,
  podLabelsOf,
  podSpecOf,
  readYaml,
  run,
  unknownKeys,
  validateObject,
  type K8sObject,
} from './support';

/**
 * helm/baton rendered offline with helm v4: lint, schema, every object against the Kubernetes and
 * KEDA schemas, and the properties the chart promises (hardening, scaling, least privilege).
 */

/** Metrics the dashboard must chart (sdk/src/metrics.ts, engine/src/metrics.ts and prom-client's defaults). */
const DASHBOARD_METRICS = [
  'baton_runs_total',
  'baton_run_duration_seconds',
  'baton_steps_total',
  'baton_step_duration_seconds',
  'baton_step_retries_total',
  'baton_compensations_total',
  'baton_reconciled_total',
  'baton_http_request_duration_seconds',
  'nodejs_eventloop_lag_seconds',
];
const FUNCTIONS = functionFolders();
const WORKLOAD_KINDS = ['Deployment', 'Job', 'Pod'];

const bare = helmTemplate();
const full = helmTemplate({ apis: ALL_APIS, set: ['gateway.ingress.enabled=true', 'metrics.podMonitor.enabled=true'] });
const dev = helmTemplate({ apis: ALL_APIS, values: [path.join(ROOT, 'k8s/values-dev.yaml')] });
const custom = helmTemplate({
  apis: ALL_APIS,
  release: 'prod',
  namespace: 'workflows',
  set: [
    'existingSecret=baton-credentials',
    'image.registry=ghcr.io/acme/',
    'image.tag=1.2.3',
    'gateway.ingress.enabled=true',
    'gateway.ingress.className=nginx',
    'gateway.ingress.host=baton.example.com',
    'gateway.rbac.create=false',
    'functions.resize-image.concurrency=3',
    'functions.resize-image.rateLimit=100/1s',
    'functions.resize-image.needs.postgres=false',
    'functions.fetch-orders.autoscaling.enabled=false',
    'functions.generate-pdf.image.tag=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
  ],
});
/**
 * A function built outside this repository on @baton/sdk, deployed by listing it: the values snippet
 * templates/function/ gives its users (`acme-shout`, image ghcr.io/acme/shout:1.0.0).
 */
const external = helmTemplate({
  apis: ALL_APIS,
  set: ['image.registry=registry.example.com/baton', 'image.tag=2.0.0'],
  values: [path.join(ROOT, 'templates/function/chart-values.yaml')],
});
/** On a Redis Cluster with a sharded inbox (REDIS_CLUSTER_NODES, BATON_INBOX_SHARDS). */
const redisCluster = helmTemplate({
  apis: ALL_APIS,
  set: [
    'redis.clusterNodes={redis-0.redis:6379,redis-1.redis:6379,redis-2.redis:6379}',
    'redis.inboxShards=16',
    'redis.inboxDrainShards=32',
  ],
});
const RENDERS: Record<string, K8sObject[]> = { bare, full, dev, custom, external, redisCluster };

const workloads = (objects: K8sObject[]): K8sObject[] => objects.filter((o) => WORKLOAD_KINDS.includes(o.kind));
const containersOf = (obj: K8sObject): any[] => podSpecOf(obj)?.containers ?? [];
const envOf = (container: any): Record<string, any> =>
  Object.fromEntries((container.env ?? []).map((e: any) => [e.name, e.value ?? e.valueFrom]));

describe('helm lint', () => {
  it.each([
    ['without optional APIs', []],
    // helm lint has no --api-versions: the API-dependent templates are rendered by `helm template` below.
    [
      'with the dev values and the Ingress',
      ['--values', path.join(ROOT, 'k8s/values-dev.yaml'), '--set', 'gateway.ingress.enabled=true'],
    ],
  ])('passes --strict %s', (_label, extra) => {
    const res = run(HELM, ['lint', '--strict', CHART, ...extra]);
    expect(res.stdout + res.stderr).toContain('0 chart(s) failed');
    expect(res.status).toBe(0);
  });
});

describe.each(Object.entries(RENDERS))('helm template (%s)', (_label, objects) => {
  it('renders only objects valid against the Kubernetes and KEDA schemas', () => {
    expect(objects.length).toBeGreaterThan(20);
    const unchecked: string[] = [];
    for (const obj of objects) {
      try {
        if (validateObject(obj) === 'no-model') unchecked.push(`${obj.apiVersion} ${obj.kind}`);
      } catch (err) {
        throw new Error(`${obj.kind}/${obj.metadata.name}: ${(err as Error).message}`, { cause: err });
      }
    }
    // Only the Prometheus Operator's kinds have no model package; they are checked below by hand.
    expect([...new Set(unchecked)].every((u) => u.startsWith('monitoring.coreos.com/v1 '))).toBe(true);
  });

  it('uses no field the API does not know on pods, containers, Deployments and ScaledObjects', () => {
    for (const obj of workloads(objects)) {
      const where = `${obj.kind}/${obj.metadata.name}`;
      expect({ where, unknown: unknownKeys(podSpecOf(obj), KNOWN_FIELDS.podSpec) }).toEqual({ where, unknown: [] });
      for (const c of containersOf(obj)) {
        expect({ where, unknown: unknownKeys(c, KNOWN_FIELDS.container) }).toEqual({ where, unknown: [] });
      }
      if (obj.kind === 'Deployment') {
        expect({ where, unknown: unknownKeys(obj.spec, KNOWN_FIELDS.deploymentSpec) }).toEqual({ where, unknown: [] });
      }
    }
    for (const so of ofKind(objects, 'ScaledObject')) {
      expect(unknownKeys(so.spec, KNOWN_FIELDS.scaledObjectSpec)).toEqual([]);
    }
  });

  it('names objects uniquely within 63 characters and labels them the conventional way', () => {
    const ids = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    expect(new Set(ids).size).toBe(ids.length);
    for (const obj of objects) {
      expect(obj.metadata.name.length).toBeLessThanOrEqual(63);
      expect(obj.metadata.labels).toMatchObject({
        'app.kubernetes.io/name': 'baton',
        'app.kubernetes.io/managed-by': 'Helm',
        'app.kubernetes.io/part-of': 'baton',
      });
    }
  });

  it('hardens every pod: non-root, read-only root, no escalation, no capabilities, seccomp, /tmp, limits', () => {
    for (const obj of workloads(objects)) {
      const spec = podSpecOf(obj);
      const where = `${obj.kind}/${obj.metadata.name}`;
      expect({ where, ctx: spec.securityContext }).toMatchObject({
        where,
        ctx: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
      });
      expect(spec.securityContext.runAsUser).toBeGreaterThan(0);
      const tmp = (spec.volumes ?? []).find((v: any) => v.name === 'tmp');
      expect({ where, tmp: tmp?.emptyDir }).toEqual({ where, tmp: expect.objectContaining({ sizeLimit: '64Mi' }) });
      for (const c of containersOf(obj)) {
        expect({ where, ctx: c.securityContext }).toEqual({
          where,
          ctx: expect.objectContaining({
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            runAsNonRoot: true,
            capabilities: { drop: ['ALL'] },
          }),
        });
        expect(c.volumeMounts).toContainEqual({ name: 'tmp', mountPath: '/tmp' });
        for (const kind of ['requests', 'limits']) {
          expect({ where, kind, cpu: c.resources?.[kind]?.cpu, mem: c.resources?.[kind]?.memory }).toEqual({
            where,
            kind,
            cpu: expect.anything(),
            mem: expect.anything(),
          });
        }
      }
    }
  });

  it('gives every Deployment probes on a named container port and a grace period above the runtime stop', () => {
    for (const d of ofKind(objects, 'Deployment')) {
      const spec = podSpecOf(d);
      expect(spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(SHUTDOWN_TIMEOUT_MS);
      for (const c of containersOf(d)) {
        const ports = (c.ports ?? []).map((p: any) => p.name);
        for (const probe of ['livenessProbe', 'readinessProbe']) {
          expect({ d: d.metadata.name, probe, port: ports.includes(c[probe]?.httpGet?.port) }).toEqual({
            d: d.metadata.name,
            probe,
            port: true,
          });
        }
      }
    }
  });

  it('mounts a service account token only on the gateway, whose Role reads Deployments and nothing else', () => {
    for (const obj of workloads(objects)) {
      const spec = podSpecOf(obj);
      const isGateway = podLabelsOf(obj)['app.kubernetes.io/component'] === 'gateway';
      const rbac = ofKind(objects, 'Role').length > 0;
      expect({ name: obj.metadata.name, token: spec.automountServiceAccountToken }).toEqual({
        name: obj.metadata.name,
        token: isGateway && rbac,
      });
    }
    for (const role of ofKind(objects, 'Role')) {
      expect(role.rules).toEqual([
        { apiGroups: ['apps'], resources: ['deployments'], verbs: ['get', 'list', 'watch'] },
      ]);
      const binding = find(objects, 'RoleBinding', role.metadata.name);
      const gateway = ofKind(objects, 'Deployment').find((d) => d.metadata.name.endsWith('-gateway'))!;
      expect(binding.roleRef).toEqual({
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'Role',
        name: role.metadata.name,
      });
      expect(binding.subjects).toEqual([
        expect.objectContaining({ kind: 'ServiceAccount', name: podSpecOf(gateway).serviceAccountName }),
      ]);
    }
    expect(objects.some((o) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding')).toBe(false);
  });

  it('has a PodDisruptionBudget selecting each Deployment', () => {
    const pdbs = ofKind(objects, 'PodDisruptionBudget');
    for (const d of ofKind(objects, 'Deployment')) {
      const covering = pdbs.filter((p) => matchesSelector(podLabelsOf(d), p.spec.selector.matchLabels));
      expect({ d: d.metadata.name, pdbs: covering.length }).toEqual({ d: d.metadata.name, pdbs: 1 });
      // Functions may be at zero replicas: minAvailable would block every node drain.
      if (d.metadata.labels?.['baton.io/function']) expect(covering[0].spec.maxUnavailable).toBe(1);
    }
  });

  it('reads credentials only from the Secret, and only the keys each pod needs', () => {
    for (const obj of workloads(objects)) {
      for (const c of containersOf(obj)) {
        for (const e of c.env ?? []) {
          if (['DATABASE_URL', 'SMTP_URL', 'BATON_API_KEYS', 'BATON_READONLY_API_KEYS', 'REDIS_URL'].includes(e.name)) {
            expect({ name: e.name, value: e.value }).toEqual({ name: e.name, value: undefined });
            expect(e.valueFrom.secretKeyRef.key).toBe(e.name);
          }
        }
        const env = envOf(c);
        const fn = podLabelsOf(obj)['baton.io/function'];
        expect({ fn, smtp: 'SMTP_URL' in env }).toEqual({ fn, smtp: fn === 'send-email' });
      }
    }
  });

  it('puts every pod behind the default-deny NetworkPolicy and a policy of its own', () => {
    const policies = ofKind(objects, 'NetworkPolicy');
    const deny = policies.find((p) => p.metadata.name.endsWith('-default-deny'))!;
    expect(deny.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(deny.spec.ingress).toBeUndefined();
    expect(deny.spec.egress).toBeUndefined();
    for (const obj of workloads(objects)) {
      const labels = podLabelsOf(obj);
      expect(matchesSelector(labels, deny.spec.podSelector.matchLabels)).toBe(true);
      const own = policies.filter((p) => p !== deny && matchesSelector(labels, p.spec.podSelector.matchLabels));
      expect({ pod: obj.metadata.name, policies: own.length }).toEqual({ pod: obj.metadata.name, policies: 1 });
    }
    for (const policy of policies) {
      // A rule without peers admits every source: never render one.
      for (const rule of policy.spec.ingress ?? []) expect(rule.from?.length).toBeGreaterThan(0);
    }
  });
});

describe('scaling with KEDA', () => {
  it('renders no KEDA or Prometheus Operator object when the cluster lacks those APIs, and fixed replicas', () => {
    const kinds = new Set(bare.map((o) => o.kind));
    for (const kind of ['ScaledObject', 'ServiceMonitor', 'PodMonitor', 'PrometheusRule'])
      expect(kinds.has(kind)).toBe(false);
    for (const fn of FUNCTIONS) expect(find(bare, 'Deployment', `baton-fn-${fn}`).spec.replicas).toBe(1);
  });

  it('scales each function on the coordinator /backlog endpoint, leaving replicas to the HPA', () => {
    const coordinator = find(full, 'Service', 'baton-coordinator');
    const backlogPort = coordinator.spec.ports.find((p: any) => p.name === 'metrics').port;
    const coordinatorPod = find(full, 'Deployment', 'baton-coordinator');
    expect(envOf(containersOf(coordinatorPod)[0]).METRICS_PORT).toBe(String(backlogPort));
    const scaled = ofKind(full, 'ScaledObject');
    expect(scaled.map((s) => s.metadata.name).sort()).toEqual(FUNCTIONS.map((f) => `baton-fn-${f}`));
    // Functions holding PostgreSQL connections scale within the connection budget; the others further.
    const maxReplicas: Record<string, number> = {
      'void-invoice': 2,
      'http-request': 10,
      transform: 10,
      'emit-events': 10,
    };
    for (const fn of FUNCTIONS) {
      const so = find(full, 'ScaledObject', `baton-fn-${fn}`);
      const deployment = find(full, 'Deployment', so.spec.scaleTargetRef.name);
      expect(deployment.spec.replicas).toBeUndefined();
      expect(so.spec).toMatchObject({
        minReplicaCount: 0,
        maxReplicaCount: maxReplicas[fn] ?? 4,
        pollingInterval: 15,
        cooldownPeriod: 300,
        fallback: { failureThreshold: 3, replicas: 1 },
      });
      expect(so.spec.triggers).toEqual([
        {
          type: 'metrics-api',
          name: 'backlog',
          metricType: 'AverageValue',
          metadata: {
            url: `http://baton-coordinator.baton.svc.cluster.local:${backlogPort}/backlog?function=${fn}`,
            format: 'json',
            valueLocation: 'backlog',
            targetValue: '8',
            activationTargetValue: '0',
          },
        },
      ]);
    }
  });

  it('follows release, namespace, per-function overrides and new functions', () => {
    const so = find(custom, 'ScaledObject', 'prod-baton-fn-resize-image');
    expect(so.spec.triggers[0].metadata.url).toBe(
      'http://prod-baton-coordinator.workflows.svc.cluster.local:9464/backlog?function=resize-image',
    );
    const resize = find(custom, 'Deployment', 'prod-baton-fn-resize-image');
    const env = envOf(containersOf(resize)[0]);
    expect(env.RESIZE_IMAGE_CONCURRENCY).toBe('3');
    expect(env.RESIZE_IMAGE_RATE_LIMIT).toBe('100/1s');
    // values.schema.json refuses a rate limit the function runtime would refuse at start.
    expect(helmTemplateError({ set: ['functions.resize-image.rateLimit=fast'] })).toMatch(/rateLimit/);
    // Only where set: no rate limit by default.
    expect(
      envOf(containersOf(find(custom, 'Deployment', 'prod-baton-fn-generate-pdf'))[0]).GENERATE_PDF_RATE_LIMIT,
    ).toBeUndefined();
    expect(env.DATABASE_URL).toBeUndefined();
    expect(containersOf(resize)[0].image).toBe('ghcr.io/acme/baton-fn-resize-image:1.2.3');
    expect(containersOf(find(custom, 'Deployment', 'prod-baton-fn-generate-pdf'))[0].image).toMatch(
      /^ghcr\.io\/acme\/baton-fn-generate-pdf@sha256:[0-9a-f]{64}$/,
    );
    // Autoscaling off for one function: no ScaledObject, a fixed replica count.
    expect(custom.some((o) => o.kind === 'ScaledObject' && o.metadata.name === 'prod-baton-fn-fetch-orders')).toBe(
      false,
    );
    expect(find(custom, 'Deployment', 'prod-baton-fn-fetch-orders').spec.replicas).toBe(1);
    // The coordinator's NetworkPolicy admits the KEDA operator on the backlog port.
    const policy = find(custom, 'NetworkPolicy', 'prod-baton-coordinator');
    expect(policy.spec.ingress[0].ports).toEqual([{ protocol: 'TCP', port: 'metrics' }]);
    expect(policy.spec.ingress[0].from).toContainEqual({
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'keda' } },
    });
  });
});

describe('a function from its own repository, listed in `functions`', () => {
  const deployment = () => find(external, 'Deployment', 'baton-fn-acme-shout');
  const container = () => containersOf(deployment())[0];

  it('runs its image as written, whatever image.registry prefixes to Baton’s own', () => {
    expect(container().image).toBe('ghcr.io/acme/shout:1.0.0');
    expect(containersOf(find(external, 'Deployment', 'baton-fn-transform'))[0].image).toBe(
      'registry.example.com/baton/baton-fn-transform:2.0.0',
    );
  });

  it('gets the probes, hardening and environment of a built-in, and no DATABASE_URL', () => {
    const builtin = containersOf(find(external, 'Deployment', 'baton-fn-transform'))[0];
    for (const key of ['livenessProbe', 'readinessProbe', 'securityContext', 'ports', 'resources'])
      expect({ key, value: container()[key] }).toEqual({ key, value: builtin[key] });
    expect(podSpecOf(deployment()).securityContext).toEqual(
      podSpecOf(find(external, 'Deployment', 'baton-fn-transform')).securityContext,
    );
    const env = envOf(container());
    expect(env).toMatchObject({ METRICS_PORT: '9464', BATON_QUEUE_PREFIX: 'baton', REDIS_HOST: 'redis' });
    expect(env.DATABASE_URL).toBeUndefined();
    expect(env.SMTP_URL).toBeUndefined();
  });

  it('on a Redis Cluster: every component gets the nodes and the shard count; KEDA reads the backlog endpoint', () => {
    const nodes = 'redis-0.redis:6379,redis-1.redis:6379,redis-2.redis:6379';
    for (const workload of workloads(redisCluster).filter((w) => w.kind === 'Deployment')) {
      const env = envOf(containersOf(workload)[0]);
      expect(env).toMatchObject({ REDIS_CLUSTER_NODES: nodes, BATON_INBOX_SHARDS: '16' });
    }
    expect(envOf(containersOf(find(redisCluster, 'Deployment', 'baton-coordinator'))[0])).toMatchObject({
      BATON_INBOX_DRAIN_SHARDS: '32',
    });
    // Single Redis (the default): no cluster variable, one inbox stream, no drain.
    const single = envOf(containersOf(find(bare, 'Deployment', 'baton-coordinator'))[0]);
    expect(single.REDIS_CLUSTER_NODES).toBeUndefined();
    expect(single.BATON_INBOX_DRAIN_SHARDS).toBeUndefined();
    expect(single.BATON_INBOX_SHARDS).toBe('1');
    for (const fn of FUNCTIONS) {
      const so = find(redisCluster, 'ScaledObject', `baton-fn-${fn}`);
      // Only the backlog endpoint: every step job is prioritized (BullMQ's prioritized set, not its
      // wait list), and KEDA's redis-cluster scaler reads list lengths only.
      expect(so.spec.triggers.map((t: { type: string }) => t.type)).toEqual(['metrics-api']);
    }
    expect(helmTemplateError({ set: ['redis.clusterNodes={redis-0}'] })).toMatch(/clusterNodes/);
  });

  it('scales on its backlog with a ScaledObject, and has a PodDisruptionBudget and a NetworkPolicy', () => {
    const so = find(external, 'ScaledObject', 'baton-fn-acme-shout');
    expect(so.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: 'baton-fn-acme-shout' });
    expect(so.spec.minReplicaCount).toBe(0);
    expect(so.spec.triggers[0].metadata.url).toBe(
      'http://baton-coordinator.baton.svc.cluster.local:9464/backlog?function=acme-shout',
    );
    const pdb = find(external, 'PodDisruptionBudget', 'baton-fn-acme-shout');
    expect(matchesSelector(podLabelsOf(deployment()), pdb.spec.selector.matchLabels)).toBe(true);
    const policy = find(external, 'NetworkPolicy', 'baton-fn-acme-shout');
    expect(matchesSelector(podLabelsOf(deployment()), policy.spec.podSelector.matchLabels)).toBe(true);
    // DNS and Redis only, as a built-in that needs nothing else: it asked for nothing more.
    expect(policy.spec.egress).toEqual(find(external, 'NetworkPolicy', 'baton-fn-transform').spec.egress);
  });

  it('is accepted by values.schema.json with nothing but its image; a name that is no function name is refused', () => {
    expect(find(external, 'Service', 'baton-fn-acme-shout').spec.ports[0].targetPort).toBe('metrics');
    expect(helmTemplateError({ set: ['functions.Acme_Shout.image.repository=ghcr.io/acme/shout'] })).toMatch(
      /Acme_Shout/,
    );
  });
});

describe('chart contents', () => {
  it('runs migrations from the coordinator image as a pre-install/pre-upgrade hook, after the Secret', () => {
    const job = find(bare, 'Job', 'baton-migrations');
    expect(job.metadata.annotations).toMatchObject({ 'helm.sh/hook': 'pre-install,pre-upgrade' });
    const secret = find(bare, 'Secret', 'baton-secrets');
    expect(Number(secret.metadata.annotations!['helm.sh/hook-weight'])).toBeLessThan(
      Number(job.metadata.annotations!['helm.sh/hook-weight']),
    );
    const [c] = containersOf(job);
    expect(c.image).toBe(containersOf(find(bare, 'Deployment', 'baton-coordinator'))[0].image);
    expect(c.command).toEqual(['node', 'scripts/migrate.js']);
    expect(c.workingDir).toBe('/app');
    expect(fs.existsSync(path.join(ROOT, 'scripts/migrate.js'))).toBe(true);
    // The Dockerfile ships the script and migrations/ in the coordinator image only.
    expect(fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8')).toMatch(
      /services\/coordinator[\s\S]*cp scripts\/migrate\.js[\s\S]*migrations/,
    );
  });

  it('mounts workflows/ as a ConfigMap where WORKFLOWS_DIR points', () => {
    const cm = find(bare, 'ConfigMap', 'baton-workflows');
    const files = fs.readdirSync(path.join(ROOT, 'workflows')).filter((f) => /\.(ya?ml|json)$/.test(f));
    expect(Object.keys(cm.data).sort()).toEqual(files.sort());
    for (const file of files) {
      expect(cm.data[file].trim()).toBe(fs.readFileSync(path.join(ROOT, 'workflows', file), 'utf8').trim());
    }
    const deployment = find(bare, 'Deployment', 'baton-coordinator');
    const [c] = containersOf(deployment);
    const mount = c.volumeMounts.find((m: any) => m.name === 'workflows');
    expect(envOf(c).WORKFLOWS_DIR).toBe(mount.mountPath);
    expect(podSpecOf(deployment).volumes).toContainEqual({ name: 'workflows', configMap: { name: 'baton-workflows' } });
  });

  it('probes the gateway on /healthz and /readyz of its HTTP port', () => {
    const [c] = containersOf(find(bare, 'Deployment', 'baton-gateway'));
    expect(envOf(c).PORT).toBe('3000');
    expect(c.ports).toEqual([{ name: 'http', containerPort: 3000, protocol: 'TCP' }]);
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
  });

  it('serves functions their /healthz and /metrics on METRICS_PORT', () => {
    for (const fn of FUNCTIONS) {
      const [c] = containersOf(find(bare, 'Deployment', `baton-fn-${fn}`));
      expect(envOf(c).METRICS_PORT).toBe('9464');
      expect(c.ports).toEqual([{ name: 'metrics', containerPort: 9464, protocol: 'TCP' }]);
      expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    }
  });

  it('routes the Ingress to the gateway with the configured class', () => {
    expect(bare.some((o) => o.kind === 'Ingress')).toBe(false);
    const ingress = find(custom, 'Ingress', 'prod-baton-gateway');
    expect(ingress.spec.ingressClassName).toBe('nginx');
    expect(ingress.spec.rules).toEqual([
      {
        host: 'baton.example.com',
        http: {
          paths: [
            {
              path: '/',
              pathType: 'Prefix',
              backend: { service: { name: 'prod-baton-gateway', port: { name: 'http' } } },
            },
          ],
        },
      },
    ]);
  });

  it('uses an existing Secret instead of creating one', () => {
    expect(custom.some((o) => o.kind === 'Secret')).toBe(false);
    for (const obj of workloads(custom)) {
      for (const c of containersOf(obj)) {
        for (const e of c.env ?? [])
          if (e.valueFrom?.secretKeyRef) expect(e.valueFrom.secretKeyRef.name).toBe('baton-credentials');
      }
    }
    // Without a Role the gateway mounts no token and its NetworkPolicy has no API egress.
    expect(custom.some((o) => o.kind === 'Role')).toBe(false);
  });

  it('lets only send-email reach SMTP, and only the gateway reach the Kubernetes API', () => {
    const egressPorts = (name: string): number[] =>
      find(full, 'NetworkPolicy', name).spec.egress.flatMap((r: any) => r.ports.map((p: any) => p.port));
    expect(egressPorts('baton-fn-send-email')).toEqual(expect.arrayContaining([53, 6379, 5432, 587, 1025]));
    for (const fn of FUNCTIONS.filter((f) => f !== 'send-email')) {
      expect(egressPorts(`baton-fn-${fn}`)).not.toContain(587);
    }
    // http-request calls public HTTP APIs (it refuses private addresses itself); nothing else may.
    expect(egressPorts('baton-fn-http-request')).toEqual(expect.arrayContaining([80, 443]));
    expect(egressPorts('baton-fn-http-request')).not.toContain(5432);
    for (const fn of FUNCTIONS.filter((f) => f !== 'http-request'))
      expect(egressPorts(`baton-fn-${fn}`)).not.toContain(443);
    expect(egressPorts('baton-gateway')).toEqual(expect.arrayContaining([443, 6443]));
    expect(egressPorts('baton-coordinator')).not.toContain(443);
  });

  it('renders the monitoring objects against the Services and metrics that exist', () => {
    const sm = find(full, 'ServiceMonitor', 'baton');
    expect(sm.spec.endpoints.map((e: any) => e.port).sort()).toEqual(['http', 'metrics']);
    const services = ofKind(full, 'Service');
    for (const svc of services) expect(matchesSelector(svc.metadata.labels!, sm.spec.selector.matchLabels)).toBe(true);
    expect(services.every((s) => s.spec.ports.some((p: any) => ['http', 'metrics'].includes(p.name)))).toBe(true);
    const pm = find(full, 'PodMonitor', 'baton');
    expect(pm.spec.podMetricsEndpoints.map((e: any) => e.port).sort()).toEqual(['http', 'metrics']);

    const rule = find(full, 'PrometheusRule', 'baton');
    const alerts = rule.spec.groups.flatMap((g: any) => g.rules);
    expect(alerts.map((a: any) => a.alert)).toEqual(
      expect.arrayContaining([
        'BatonRunFailureRatioHigh',
        'BatonCompensationFailed',
        'BatonFunctionHasBacklogButNoWorkers',
      ]),
    );
    const defined = definedMetrics();
    for (const alert of alerts) {
      expect(alert.labels.severity).toMatch(/^(warning|critical)$/);
      for (const metric of alert.expr.match(/baton_[a-z_]+/g) ?? []) expect(defined).toContain(metric);
    }
  });

  it('ships a Grafana dashboard ConfigMap with a datasource variable over the metrics that exist', () => {
    const cm = find(bare, 'ConfigMap', 'baton-dashboard');
    expect(cm.metadata.labels!.grafana_dashboard).toBe('1');
    const text: string = cm.data['baton.json'];
    expect(text).not.toContain('DS_PROMETHEUS');
    const dashboard = JSON.parse(text);
    const variable = dashboard.templating.list.find((v: any) => v.type === 'datasource');
    expect(variable).toMatchObject({ name: 'datasource', query: 'prometheus' });
    const panels = dashboard.panels.filter((p: any) => p.type !== 'row');
    expect(panels.length).toBeGreaterThanOrEqual(10);
    const used = new Set<string>();
    for (const panel of panels) {
      expect(panel.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
      for (const t of panel.targets) {
        expect(t.datasource.uid).toBe('${datasource}');
        for (const m of t.expr.match(/baton_[a-z_]+|nodejs_eventloop_lag_seconds/g) ?? [])
          used.add(m.replace(/_(bucket|count|sum)$/, ''));
      }
    }
    const defined = definedMetrics();
    for (const m of used) if (m.startsWith('baton_')) expect(defined).toContain(m);
    for (const m of DASHBOARD_METRICS) expect([...used]).toContain(m);
  });

  it('defines a helm test that starts a run through the gateway Service', () => {
    const pod = find(bare, 'Pod', 'baton-test-run');
    expect(pod.metadata.annotations!['helm.sh/hook']).toBe('test');
    const [c] = containersOf(pod);
    expect(c.command.slice(0, 2)).toEqual(['node', '-e']);
    expect(c.command[2]).toBe(fs.readFileSync(path.join(CHART, 'files/tests/run-invoice.js'), 'utf8'));
    const gatewaySvc = find(bare, 'Service', 'baton-gateway');
    expect(envOf(c).BATON_URL).toBe(`http://baton-gateway:${gatewaySvc.spec.ports[0].port}`);
    // The gateway's NetworkPolicy admits the test pod.
    const policy = find(bare, 'NetworkPolicy', 'baton-gateway');
    const peers = policy.spec.ingress.flatMap((r: any) => r.from);
    expect(
      peers.some((p: any) => p.podSelector && matchesSelector(pod.metadata.labels!, p.podSelector.matchLabels)),
    ).toBe(true);
  });
});

describe('API authentication: never open unless asked', () => {
  const secretOf = (objects: K8sObject[]): Record<string, string> =>
    find(objects, 'Secret', 'baton-secrets').stringData;
  const gatewayEnv = (objects: K8sObject[]): any[] => containersOf(find(objects, 'Deployment', 'baton-gateway'))[0].env;
  const keyRef = (objects: K8sObject[], name: string): any =>
    gatewayEnv(objects).find((e: any) => e.name === name)?.valueFrom?.secretKeyRef;

  it('generates a random API key into the Secret when none is given, and the gateway cannot start without it', () => {
    for (const objects of [bare, full]) {
      const keys = secretOf(objects).BATON_API_KEYS;
      expect(keys).toMatch(/^[A-Za-z0-9]{40,}$/);
      expect(keyRef(objects, 'BATON_API_KEYS')).toEqual({ name: 'baton-secrets', key: 'BATON_API_KEYS' });
      // Marked, so that an upgrade keeps this key and only this kind of key (see the lookup tests).
      expect(find(objects, 'Secret', 'baton-secrets').metadata.annotations!['baton.io/api-key']).toBe('generated');
    }
    // Without a cluster to look the Secret up in, each render draws a new key: never a constant.
    expect(secretOf(bare).BATON_API_KEYS).not.toBe(secretOf(full).BATON_API_KEYS);
    // The helm test pod reads the same Secret key.
    const [test] = containersOf(find(bare, 'Pod', 'baton-test-run'));
    expect(envOf(test).BATON_API_KEYS.secretKeyRef).toMatchObject({ name: 'baton-secrets', key: 'BATON_API_KEYS' });
  });

  it('leaves the API open for the local cluster of skaffold dev only because its values ask for it', () => {
    expect(readYaml('k8s/values-dev.yaml').auth).toEqual({ allowAnonymous: true });
    expect(secretOf(dev).BATON_API_KEYS).toBe('');
    expect(keyRef(dev, 'BATON_API_KEYS')).toMatchObject({ optional: true });
    expect(helmNotes({ values: [path.join(ROOT, 'k8s/values-dev.yaml')] })).toContain('WARNING: the API is OPEN');
  });

  it('renders an open API only with auth.allowAnonymous=true, and uses given keys as given', () => {
    const open = helmTemplate({ set: ['auth.allowAnonymous=true'] });
    expect(secretOf(open).BATON_API_KEYS).toBe('');
    expect(find(open, 'Secret', 'baton-secrets').metadata.annotations!['baton.io/api-key']).toBeUndefined();
    expect(keyRef(open, 'BATON_API_KEYS')).toEqual({ name: 'baton-secrets', key: 'BATON_API_KEYS', optional: true });

    for (const extra of [[], ['auth.allowAnonymous=true']]) {
      const given = helmTemplate({ set: ['secrets.apiKeys=k1\\,k2', 'secrets.readonlyApiKeys=ro1', ...extra] });
      expect(secretOf(given).BATON_API_KEYS).toBe('k1,k2');
      expect(secretOf(given).BATON_READONLY_API_KEYS).toBe('ro1');
      expect(find(given, 'Secret', 'baton-secrets').metadata.annotations!['baton.io/api-key']).toBeUndefined();
      expect(keyRef(given, 'BATON_READONLY_API_KEYS')).toEqual({
        name: 'baton-secrets',
        key: 'BATON_READONLY_API_KEYS',
        optional: true,
      });
    }
  });

  it('keeps read-only keys set in gateway.extraEnv, and refuses full keys there', () => {
    const objects = helmTemplate({ set: ['gateway.extraEnv.BATON_READONLY_API_KEYS=ro1'] });
    const named = gatewayEnv(objects).filter((e: any) => e.name === 'BATON_READONLY_API_KEYS');
    // One entry, not two: a duplicate env name is refused by server-side apply.
    expect(named).toEqual([{ name: 'BATON_READONLY_API_KEYS', value: 'ro1' }]);
    expect(helmTemplateError({ set: ['gateway.extraEnv.BATON_API_KEYS='] })).toContain(
      'gateway.extraEnv.BATON_API_KEYS',
    );
  });

  it('with existingSecret, requires its BATON_API_KEYS unless auth.allowAnonymous=true', () => {
    const gateway = containersOf(find(custom, 'Deployment', 'prod-baton-gateway'))[0];
    expect(envOf(gateway).BATON_API_KEYS.secretKeyRef).toEqual({ name: 'baton-credentials', key: 'BATON_API_KEYS' });
    const open = helmTemplate({ set: ['existingSecret=baton-credentials', 'auth.allowAnonymous=true'] });
    expect(keyRef(open, 'BATON_API_KEYS')).toEqual({
      name: 'baton-credentials',
      key: 'BATON_API_KEYS',
      optional: true,
    });
  });

  const existingSecret = (annotations: Record<string, string>, keys: string): K8sObject => ({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'baton-secrets', namespace: 'baton', annotations },
    data: { BATON_API_KEYS: Buffer.from(keys).toString('base64') },
  });

  it('keeps the generated key across upgrades (lookup of the Secret), and rolls the gateway only when it changes', async () => {
    const kept = 'Kept0123456789abcdefghijklmnopqrstuvwxyzABCD';
    const first = await helmTemplateOnCluster([existingSecret({ 'baton.io/api-key': 'generated' }, kept)]);
    expect({ status: first.status, stderr: first.stderr }).toEqual({ status: 0, stderr: expect.any(String) });
    expect(secretOf(first.objects).BATON_API_KEYS).toBe(kept);
    const second = await helmTemplateOnCluster([existingSecret({ 'baton.io/api-key': 'generated' }, kept)]);
    const checksum = (objects: K8sObject[]): string =>
      find(objects, 'Deployment', 'baton-gateway').spec.template.metadata.annotations['checksum/secrets'];
    expect(checksum(second.objects)).toBe(checksum(first.objects));

    // Upgrading an install that ran open (the chart before this default) or whose key was removed
    // from the Secret: a new key, and a new checksum so the gateway pods restart with it.
    for (const secret of [existingSecret({}, ''), existingSecret({ 'baton.io/api-key': 'generated' }, '')]) {
      const upgraded = await helmTemplateOnCluster([secret]);
      expect(secretOf(upgraded.objects).BATON_API_KEYS).toMatch(/^[A-Za-z0-9]{40,}$/);
      expect(checksum(upgraded.objects)).not.toBe(checksum(first.objects));
    }
    // A key the chart did not generate (once given in secrets.apiKeys, since removed) is not kept.
    const dropped = await helmTemplateOnCluster([existingSecret({}, 'old-given-key')]);
    expect(secretOf(dropped.objects).BATON_API_KEYS).toMatch(/^[A-Za-z0-9]{40,}$/);
  });

  it('refuses an existingSecret without BATON_API_KEYS when the cluster can be asked', async () => {
    const secret = { ...existingSecret({}, ''), metadata: { name: 'baton-credentials', namespace: 'baton' } };
    const refused = await helmTemplateOnCluster([secret], { set: ['existingSecret=baton-credentials'] });
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain('baton-credentials');
    expect(refused.stderr).toContain('auth.allowAnonymous');
    const allowed = await helmTemplateOnCluster([secret], {
      set: ['existingSecret=baton-credentials', 'auth.allowAnonymous=true'],
    });
    expect({ status: allowed.status, stderr: allowed.stderr }).toEqual({ status: 0, stderr: expect.any(String) });
    // A Secret that has the key passes.
    const keyed = { ...existingSecret({}, 'k1'), metadata: { name: 'baton-credentials', namespace: 'baton' } };
    expect((await helmTemplateOnCluster([keyed], { set: ['existingSecret=baton-credentials'] })).status).toBe(0);
  });

  it('says in NOTES how to read the generated key, and warns loudly when the API is open', () => {
    const notes = helmNotes();
    expect(notes).toContain(
      "kubectl -n baton get secret baton-secrets -o jsonpath='{.data.BATON_API_KEYS}' | base64 -d",
    );
    expect(notes).toContain('Authorization: Bearer');
    expect(notes).not.toContain('OPEN');
    expect(helmNotes({ set: ['auth.allowAnonymous=true'] })).toContain('WARNING: the API is OPEN');
    expect(helmNotes({ set: ['secrets.apiKeys=k1'] })).not.toContain('base64 -d');
  });
});

/** Every Deployment that reaches PostgreSQL: its most replicas (ScaledObject max, else replicas) and pool. */
function connectionRows(objects: K8sObject[]): { name: string; replicas: number; poolMax: number }[] {
  const scaled = ofKind(objects, 'ScaledObject');
  return ofKind(objects, 'Deployment')
    .filter((d) => 'DATABASE_URL' in envOf(containersOf(d)[0]))
    .map((d) => {
      const so = scaled.find((s) => s.spec.scaleTargetRef.name === d.metadata.name);
      const replicas = so ? so.spec.maxReplicaCount : d.spec.replicas;
      return { name: d.metadata.name, replicas, poolMax: Number(envOf(containersOf(d)[0]).DATABASE_POOL_MAX) };
    });
}
const worstCase = (objects: K8sObject[]): number =>
  connectionRows(objects).reduce((sum, r) => sum + r.replicas * r.poolMax, 0);

describe('PostgreSQL connection budget', () => {
  const values = readYaml('helm/baton/values.yaml');

  it('gives every component that reaches PostgreSQL an explicit DATABASE_POOL_MAX, and none to the others', () => {
    for (const objects of Object.values(RENDERS)) {
      for (const d of ofKind(objects, 'Deployment')) {
        const env = envOf(containersOf(d)[0]);
        const where = d.metadata.name;
        if ('DATABASE_URL' in env)
          expect({ where, pool: env.DATABASE_POOL_MAX }).toEqual({ where, pool: expect.stringMatching(/^[1-9]\d*$/) });
        else expect({ where, pool: env.DATABASE_POOL_MAX }).toEqual({ where, pool: undefined });
      }
    }
    const env = (name: string): Record<string, any> => envOf(containersOf(find(full, 'Deployment', name))[0]);
    expect(env('baton-gateway').DATABASE_POOL_MAX).toBe(String(values.gateway.databasePoolMax));
    expect(env('baton-coordinator').DATABASE_POOL_MAX).toBe(String(values.coordinator.databasePoolMax));
    for (const fn of ['fetch-orders', 'create-invoice', 'void-invoice', 'generate-pdf', 'send-email'])
      expect(env(`baton-fn-${fn}`).DATABASE_POOL_MAX).toBe('2');
    for (const fn of ['http-request', 'transform', 'emit-events'])
      expect(env(`baton-fn-${fn}`).DATABASE_URL).toBeUndefined();
    // The coordinator's pool covers its BullMQ handlers and inbox loops, and more.
    const coordinator = env('baton-coordinator');
    expect(Number(coordinator.DATABASE_POOL_MAX)).toBeGreaterThan(
      Number(coordinator.COORDINATOR_CONCURRENCY) + Number(coordinator.COORDINATOR_INBOX_LOOPS),
    );
  });

  it('fits the default install at full scale within PostgreSQL’s default 100 connections minus the reserve', () => {
    const reserved = values.database.reservedConnections;
    expect(values.database.maxConnections).toBe(100);
    expect(reserved).toBeGreaterThanOrEqual(5);
    for (const [label, objects] of Object.entries({ full, bare, dev })) {
      expect({ label, total: worstCase(objects) }).toEqual({ label, total: expect.any(Number) });
      expect({ label, fits: worstCase(objects) <= 100 - reserved }).toEqual({ label, fits: true });
    }
    // With KEDA: every function at its maxReplicaCount (the table in docs/SCALING.md).
    expect(worstCase(full)).toBe(80);
    expect(worstCase(bare)).toBe(54);
    // A function with the default settings needs no PostgreSQL and costs nothing; one that does still fits.
    expect(worstCase(helmTemplate({ apis: ALL_APIS, set: ['functions.resize-image.concurrency=2'] }))).toBe(80);
    expect(worstCase(helmTemplate({ apis: ALL_APIS, set: ['functions.resize-image.needs.postgres=true'] }))).toBe(88);
  });

  it('fails the render with one clear message when the worst case exceeds the budget', () => {
    const set = ['functionDefaults.autoscaling.maxReplicaCount=10'];
    // 4 functions × 10 replicas × 2 + void-invoice 2 × 2 + gateway 2 × 8 + coordinator 2 × 14 = 128.
    const message = helmTemplateError({ apis: ALL_APIS, set });
    expect(message).toContain('128 PostgreSQL connections');
    expect(message).toContain('budget of 90');
    expect(message).toContain('database.maxConnections 100');
    expect(message).toContain('database.reservedConnections 10');
    expect(message).toContain('fn-generate-pdf 10×2');
    expect(message).toContain('maxReplicaCount');
    expect(message).toContain('databasePoolMax');
    expect(message).toContain('PgBouncer');
    expect(message.match(/PostgreSQL connections/g)).toHaveLength(1);
    // The same values without KEDA: fixed replicas, within budget.
    expect(worstCase(helmTemplate({ set }))).toBe(54);
    // A larger server (or a pooler with room) takes it.
    expect(worstCase(helmTemplate({ apis: ALL_APIS, set: [...set, 'database.maxConnections=200'] }))).toBe(128);
  });

  it('allows exactly the budget and not one connection more', () => {
    expect(worstCase(helmTemplate({ apis: ALL_APIS, set: ['database.maxConnections=90'] }))).toBe(80);
    expect(helmTemplateError({ apis: ALL_APIS, set: ['database.maxConnections=89'] })).toContain(
      'needs up to 80 PostgreSQL connections',
    );
  });

  it('counts against the pooler’s client connections when DATABASE_URL points at PgBouncer', () => {
    const set = ['functionDefaults.autoscaling.maxReplicaCount=10', 'database.pooled=true'];
    expect(helmTemplateError({ apis: ALL_APIS, set })).toContain('database.poolerMaxClientConnections 100');
    const pooled = helmTemplate({ apis: ALL_APIS, set: [...set, 'database.poolerMaxClientConnections=500'] });
    expect(worstCase(pooled)).toBe(128);
  });

  it('points components at a pooler and the migration Job at PostgreSQL directly', () => {
    const job = (objects: K8sObject[]) => envOf(containersOf(find(objects, 'Job', 'baton-migrations'))[0]);
    const deployed = (objects: K8sObject[], name: string) => envOf(containersOf(find(objects, 'Deployment', name))[0]);
    // Default: no pooler, named statements kept; the Job's direct URL is an optional key it may lack.
    expect(deployed(bare, 'baton-gateway').BATON_PG_NAMED_STATEMENTS).toBeUndefined();
    expect(job(bare).BATON_MIGRATION_DATABASE_URL).toEqual({
      secretKeyRef: { name: 'baton-secrets', key: 'BATON_MIGRATION_DATABASE_URL', optional: true },
    });
    expect(find(bare, 'Secret', 'baton-secrets').stringData).not.toHaveProperty('BATON_MIGRATION_DATABASE_URL');

    const pooled = helmTemplate({
      set: [
        'database.pooled=true',
        'secrets.databaseUrl=postgres://baton@pgbouncer:6432/baton',
        'secrets.migrationDatabaseUrl=postgres://baton@postgres:5432/baton',
      ],
    });
    expect(find(pooled, 'Secret', 'baton-secrets').stringData).toMatchObject({
      DATABASE_URL: 'postgres://baton@pgbouncer:6432/baton',
      BATON_MIGRATION_DATABASE_URL: 'postgres://baton@postgres:5432/baton',
    });
    for (const name of ['baton-gateway', 'baton-coordinator'])
      expect(deployed(pooled, name).BATON_PG_NAMED_STATEMENTS).toBe('false');
    expect(job(pooled).DATABASE_URL).toEqual({ secretKeyRef: { name: 'baton-secrets', key: 'DATABASE_URL' } });
  });

  it('refuses a coordinator pool too small for its BullMQ concurrency and inbox loops', () => {
    const message = helmTemplateError({ set: ['coordinator.concurrency=16'] });
    expect(message).toContain('coordinator.databasePoolMax (14)');
    expect(message).toContain('coordinator.concurrency (16)');
    expect(message).toContain('coordinator.inboxLoops (2)');
    expect(worstCase(helmTemplate({ set: ['coordinator.concurrency=16', 'coordinator.databasePoolMax=22'] }))).toBe(70);
  });

  it('prints the worst case and the budget in NOTES', () => {
    // helm install has no --api-versions: offline, NOTES see a cluster without KEDA (fixed replicas).
    expect(helmNotes()).toContain(`PostgreSQL connections at full scale: up to ${worstCase(bare)} of 90`);
  });
});

describe('values.schema.json', () => {
  it.each([
    ['an unknown top-level key', 'replicas=3', "additional properties 'replicas'"],
    ['an unknown key in a function', 'functions.fetch-orders.replicas=3', '/functions/fetch-orders'],
    ['an unknown key deep in the gateway', 'gateway.ingress.hosts=x', "additional properties 'hosts'"],
    ['an invalid function name', 'functions.Bad_Name.replicaCount=1', 'Bad_Name'],
    ['a negative minimum replica count', 'functionDefaults.autoscaling.minReplicaCount=-1', 'minReplicaCount'],
    ['a writable root filesystem', 'containerSecurityContext.readOnlyRootFilesystem=false', 'readOnlyRootFilesystem'],
    ['a pool of no connections', 'gateway.databasePoolMax=0', '/gateway/databasePoolMax'],
    ['an unknown key under database', 'database.maxConnection=100', "additional properties 'maxConnection'"],
    ['allowAnonymous as a string', 'auth.allowAnonymous=yes', '/auth/allowAnonymous'],
    ['a negative connection reserve', 'database.reservedConnections=-1', '/database/reservedConnections'],
    [
      'a grace period below the runtime stop',
      'functionDefaults.terminationGracePeriodSeconds=10',
      'terminationGracePeriodSeconds',
    ],
  ])('rejects %s', (_label, set, message) => {
    expect(helmTemplateError({ set: [set] })).toContain(message);
  });

  it('sets additionalProperties false on every object it describes', () => {
    const schema = JSON.parse(fs.readFileSync(path.join(CHART, 'values.schema.json'), 'utf8'));
    const open: string[] = [];
    const visit = (node: any, where: string): void => {
      if (!node || typeof node !== 'object') return;
      if (node.properties && node.additionalProperties !== false) open.push(where);
      for (const [key, value] of Object.entries(node)) visit(value, `${where}/${key}`);
    };
    visit(schema, '#');
    expect(open).toEqual([]);
  });
});

describe('helm test script (files/tests/run-invoice.js) against a stub gateway', () => {
  const http = require('node:http') as typeof import('node:http');
  const { spawn } = require('node:child_process') as typeof import('node:child_process');

  async function runScript(
    statuses: string[],
    startStatus = 202,
  ): Promise<{ code: number; output: string; auth?: string }> {
    let polls = 0;
    let auth: string | undefined;
    const server = http.createServer((req, res) => {
      auth = req.headers.authorization;
      if (req.method === 'POST' && req.url === '/invoice/start') {
        res.writeHead(startStatus, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ runId: 'r1', status: 'pending', statusUrl: '/v1/runs/r1' }));
        return;
      }
      if (req.url === '/v1/runs/r1') {
        const status = statuses[Math.min(polls++, statuses.length - 1)];
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ id: 'r1', status, output: { ok: true }, error: status === 'failed' ? { code: 'X' } : null }),
        );
        return;
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as import('node:net').AddressInfo).port;
    try {
      const child = spawn(
        process.execPath,
        ['-e', fs.readFileSync(path.join(CHART, 'files/tests/run-invoice.js'), 'utf8')],
        {
          env: {
            ...process.env,
            BATON_URL: `http://127.0.0.1:${port}`,
            CUSTOMER_ID: 'cust-01',
            TIMEOUT_SECONDS: '3',
            BATON_API_KEYS: 'k1, k2',
          },
        },
      );
      let output = '';
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
      const code = await new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? -1)));
      return { code, output, auth };
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  }

  it('passes once the run succeeded, with the first API key', async () => {
    const res = await runScript(['pending', 'running', 'succeeded']);
    expect(res.output).toContain('succeeded');
    expect(res.code).toBe(0);
    expect(res.auth).toBe('Bearer k1');
  });

  it('fails when the run ends any other way, when the start is refused, or on timeout', async () => {
    expect((await runScript(['running', 'failed'])).code).toBe(1);
    expect((await runScript(['succeeded'], 400)).code).toBe(1);
    const slow = await runScript(['running']);
    expect(slow.code).toBe(1);
    expect(slow.output).toContain('not finished');
  }, 20_000);
});

/** Metric names defined in sdk/src/metrics.ts and engine/src/metrics.ts (the public contract dashboards and alerts use). */
/** Every baton_* metric the code declares: the shared ones and the coordinator's queue gauges. */
function definedMetrics(): string[] {
  const files = ['sdk/src/metrics.ts', 'engine/src/metrics.ts', 'services/coordinator/src/queue-metrics.ts'];
  return files.flatMap((file) => {
    const source = fs.readFileSync(path.join(ROOT, file), 'utf8');
    return [...source.matchAll(/name: '(baton_[a-z_]+)'/g)].map((m) => m[1]);
  });
}
