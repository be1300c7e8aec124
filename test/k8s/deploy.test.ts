import fs from 'node:fs';
import path from 'node:path';
import {
  ALL_APIS,
  ROOT,
  find,
  functionFolders,
  helmTemplate,
  kubectlKustomize,
  ofKind,
  podSpecOf,
  readYaml,
  validateObject,
} from './support';

/**
 * The other ways Baton is deployed — k8s/ (kustomize), skaffold.yaml, docker-compose.yml — checked
 * against each other and the chart, so that a new function or service cannot be left out of one.
 */

const skaffoldDocs = fs
  .readFileSync(path.join(ROOT, 'skaffold.yaml'), 'utf8')
  .split(/^---$/m)
  .map((text) => require('yaml').parse(text));
const skaffold = skaffoldDocs.find((d: any) => d.metadata.name === 'baton');
const deps = skaffoldDocs.find((d: any) => d.metadata.name === 'deps');
const compose = readYaml('docker-compose.yml');
const rendered = helmTemplate({ apis: ALL_APIS });

const WORKSPACES = [
  ...['gateway', 'coordinator'].map((s) => ({ workspace: `services/${s}`, image: `baton-${s}`, values: s })),
  ...functionFolders().map((f) => ({ workspace: `functions/${f}`, image: `baton-fn-${f}`, values: `functions.${f}` })),
];

describe('every function and service is deployed everywhere', () => {
  it('finds the function folders', () => {
    expect(functionFolders()).toEqual(expect.arrayContaining(['fetch-orders', 'send-email']));
  });

  it.each(functionFolders())('%s has a Deployment, a ScaledObject, a skaffold artifact and a compose service', (fn) => {
    const deployment = find(rendered, 'Deployment', `baton-fn-${fn}`);
    expect(podSpecOf(deployment).containers[0].image).toMatch(new RegExp(`^baton-fn-${fn}:`));
    const so = find(rendered, 'ScaledObject', `baton-fn-${fn}`);
    expect(so.spec.scaleTargetRef.name).toBe(deployment.metadata.name);
    const artifact = skaffold.build.artifacts.find((a: any) => a.image === `baton-fn-${fn}`);
    expect(artifact?.docker?.buildArgs?.WORKSPACE).toBe(`functions/${fn}`);
    const service = compose.services[`fn-${fn}`];
    expect(service?.build?.args?.WORKSPACE).toBe(`functions/${fn}`);
    expect(service.image).toBe(`baton-fn-${fn}`);
  });

  it('names no workspace that does not exist', () => {
    for (const artifact of skaffold.build.artifacts) {
      expect(fs.existsSync(path.join(ROOT, artifact.docker.buildArgs.WORKSPACE, 'package.json'))).toBe(true);
    }
    for (const service of Object.values<any>(compose.services)) {
      if (service.build)
        expect(fs.existsSync(path.join(ROOT, service.build.args.WORKSPACE, 'package.json'))).toBe(true);
    }
  });
});

describe('skaffold.yaml', () => {
  it('is a skaffold/v4beta config with one root-context Dockerfile artifact per workspace', () => {
    for (const doc of skaffoldDocs) expect(doc.apiVersion).toMatch(/^skaffold\/v4beta\d+$/);
    expect(skaffold.requires).toEqual([{ configs: ['deps'] }]);
    expect(skaffold.build.artifacts.map((a: any) => a.image).sort()).toEqual(WORKSPACES.map((w) => w.image).sort());
    for (const a of skaffold.build.artifacts) {
      expect(a).toMatchObject({ context: '.', docker: { dockerfile: 'Dockerfile' } });
      // A function's image is the Dockerfile's `function` target (its bundle, its node flags); a
      // service's the default one.
      expect(a.docker.target).toBe(a.docker.buildArgs.WORKSPACE.startsWith('functions/') ? 'function' : undefined);
    }
    expect(fs.existsSync(path.join(ROOT, 'Dockerfile'))).toBe(true);
  });

  it('injects every built image into the chart values it deploys', () => {
    const release = skaffold.deploy.helm.releases.find((r: any) => r.chartPath === 'helm/baton');
    const templates = release.setValueTemplates;
    const sets: string[] = [];
    for (const { image, values } of WORKSPACES) {
      const key = image.replace(/[^A-Za-z0-9]/g, '_');
      expect(templates[`${values}.image.repository`]).toBe(`{{.IMAGE_REPO_${key}}}`);
      expect(templates[`${values}.image.tag`]).toBe(`{{.IMAGE_TAG_${key}}}`);
      sets.push(`${values}.image.repository=registry.local/${image}`, `${values}.image.tag=dev1`);
    }
    expect(Object.keys(templates)).toHaveLength(WORKSPACES.length * 2);
    // What skaffold would pass: the schema accepts it and every Deployment gets its built image.
    const objects = helmTemplate({
      apis: ALL_APIS,
      set: sets,
      values: release.valuesFiles.map((f: string) => path.join(ROOT, f)),
    });
    const images = ofKind(objects, 'Deployment').map((d) => podSpecOf(d).containers[0].image);
    expect(images.sort()).toEqual(WORKSPACES.map((w) => `registry.local/${w.image}:dev1`).sort());
  });

  it('loads images into kind and minikube instead of pushing, and forwards gateway, Grafana and the mail UI', () => {
    const profiles = Object.fromEntries(skaffold.profiles.map((p: any) => [p.name, p]));
    for (const name of ['kind', 'minikube']) {
      expect(profiles[name].patches).toContainEqual({ op: 'replace', path: '/build/local/push', value: false });
    }
    expect(profiles.kind.activation).toEqual([{ kubeContext: 'kind-.*' }]);
    const forwarded = skaffold.portForward.map((p: any) => `${p.resourceName}:${p.port}`);
    expect(forwarded).toEqual(expect.arrayContaining(['baton-gateway:80', 'grafana:3000', 'mail:1080']));
    // The forwarded names exist: the chart's gateway Service and k8s/'s Grafana and mail catcher.
    find(rendered, 'Service', 'baton-gateway');
    const devDeps = kubectlKustomize('k8s');
    find(devDeps, 'Service', 'grafana');
    find(devDeps, 'Service', 'mail');
  });

  it('deploys k8s/ and KEDA before the chart', () => {
    expect(deps.manifests.kustomize.paths).toEqual(['k8s']);
    expect(deps.deploy.helm.releases).toContainEqual(expect.objectContaining({ name: 'keda', remoteChart: 'keda' }));
  });
});

describe('k8s/ (kubectl kustomize)', () => {
  const objects = kubectlKustomize('k8s');

  it('renders valid Kubernetes objects, all in the baton namespace, none from Bitnami', () => {
    for (const obj of objects) {
      expect({ obj: `${obj.kind}/${obj.metadata.name}`, result: validateObject(obj) }).toEqual({
        obj: `${obj.kind}/${obj.metadata.name}`,
        result: 'validated',
      });
      if (obj.kind !== 'Namespace') expect(obj.metadata.namespace).toBe('baton');
    }
    const images = objects.flatMap((o) => (podSpecOf(o)?.containers ?? []).map((c: any) => c.image));
    expect(images.length).toBeGreaterThanOrEqual(5);
    expect(images.some((i) => /bitnami/i.test(i))).toBe(false);
  });

  it('runs Redis for queues: AOF on, noeviction', () => {
    const args: string[] = podSpecOf(find(objects, 'StatefulSet', 'redis')).containers[0].args;
    expect(args.join(' ')).toMatch(/--appendonly yes/);
    expect(args.join(' ')).toMatch(/--maxmemory-policy noeviction/);
  });

  it('offers the Services the chart defaults and dev values point at', () => {
    const values = readYaml('helm/baton/values.yaml');
    find(objects, 'Service', values.redis.host);
    const dbHost = new URL(values.secrets.databaseUrl).hostname;
    const smtpHost = new URL(values.secrets.smtpUrl).hostname;
    expect(find(objects, 'Service', dbHost).spec.ports[0].port).toBe(5432);
    expect(find(objects, 'Service', smtpHost).spec.ports.map((p: any) => p.port)).toEqual([1025, 1080]);
  });

  it('provisions Grafana with the chart dashboard and Prometheus as its data source', () => {
    const generated = ofKind(objects, 'ConfigMap').find((c) => c.metadata.name.startsWith('grafana-dashboards-'))!;
    const chartDashboard = fs.readFileSync(path.join(ROOT, 'helm/baton/files/dashboards/baton.json'), 'utf8');
    expect(generated.data['baton.json']).toBe(chartDashboard);
    const grafana = podSpecOf(find(objects, 'Deployment', 'grafana'));
    expect(grafana.volumes).toContainEqual({ name: 'dashboards', configMap: { name: generated.metadata.name } });
    const provisioning = find(objects, 'ConfigMap', 'grafana-provisioning');
    expect(provisioning.data['datasources.yaml']).toContain('url: http://prometheus:9090');
  });

  it('lets Prometheus discover the pods the chart annotates', () => {
    const config = find(objects, 'ConfigMap', 'prometheus-config').data['prometheus.yml'];
    expect(config).toContain('__meta_kubernetes_pod_annotation_prometheus_io_scrape');
    const chart = helmTemplate({ values: [path.join(ROOT, 'k8s/values-dev.yaml')] });
    const annotated = ofKind(chart, 'Deployment').filter(
      (d) => d.spec.template.metadata.annotations?.['prometheus.io/scrape'] === 'true',
    );
    expect(annotated).toHaveLength(ofKind(chart, 'Deployment').length);
  });
});

describe('docker-compose.yml', () => {
  it('runs the dependencies, the migration step, gateway, coordinator, every function, Prometheus and Grafana', () => {
    const expected = [
      'redis',
      'postgres',
      'mail',
      'prometheus',
      'grafana',
      'migrate',
      'gateway',
      'coordinator',
      ...functionFolders().map((f) => `fn-${f}`),
    ];
    expect(Object.keys(compose.services).sort()).toEqual(expected.sort());
  });

  it('builds each image from the root Dockerfile with the same WORKSPACE as skaffold', () => {
    for (const { workspace, image } of WORKSPACES) {
      const built = Object.values<any>(compose.services).filter((s) => s.image === image && s.build);
      expect(built.length).toBeGreaterThan(0);
      for (const s of built) {
        expect(s.build).toMatchObject({ context: '.', dockerfile: 'Dockerfile', args: { WORKSPACE: workspace } });
        expect(s.build.target).toBe(workspace.startsWith('functions/') ? 'function' : undefined);
        expect(s.build.args.NODE_IMAGE).toContain('node:22-slim');
      }
    }
  });

  it('migrates before anything starts, and seeds the demo customers the README curl uses', () => {
    const migrate = compose.services.migrate;
    expect(migrate.command).toEqual(['node', 'scripts/migrate.js']);
    expect(migrate.environment.BATON_SEED_DEMO).toBe('true');
    for (const name of ['gateway', 'coordinator', ...functionFolders().map((f) => `fn-${f}`)]) {
      expect(compose.services[name].depends_on.migrate).toEqual({ condition: 'service_completed_successfully' });
      expect(compose.services[name].read_only).toBe(true);
    }
    expect(compose.services.gateway.ports).toContain('3000:3000');
    expect(compose.services['fn-send-email'].environment.SMTP_URL).toBe('smtp://mail:1025');
  });

  it('scrapes every Baton container and provisions the chart dashboard', () => {
    const prom = require('yaml').parse(fs.readFileSync(path.join(ROOT, 'compose/prometheus.yml'), 'utf8'));
    const targets: string[] = prom.scrape_configs.flatMap((c: any) => c.static_configs.flatMap((s: any) => s.targets));
    for (const name of ['coordinator', ...functionFolders().map((f) => `fn-${f}`)]) {
      expect(targets).toContain(`${name}:${compose.services[name].environment.METRICS_PORT}`);
    }
    expect(targets).toContain('gateway:3000');
    expect(compose.services.grafana.volumes).toContain('./helm/baton/files/dashboards:/var/lib/grafana/dashboards:ro');
  });
});
