{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "baton.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-baton, or the release name alone when it already contains the chart name. */}}
{{- define "baton.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "baton.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of a component's objects: <fullname>-<component>, within 63 characters. */}}
{{- define "baton.componentName" -}}
{{- printf "%s-%s" (include "baton.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "baton.selectorLabels" -}}
app.kubernetes.io/name: {{ include "baton.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of every object; `component` is gateway, coordinator, fn-<name>, migrations, ... */}}
{{- define "baton.labels" -}}
helm.sh/chart: {{ include "baton.chart" .root }}
{{ include "baton.selectorLabels" . }}
app.kubernetes.io/part-of: baton
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{/* Labels of the whole release's pods, for NetworkPolicies. */}}
{{- define "baton.releaseSelector" -}}
app.kubernetes.io/name: {{ include "baton.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* registry/repository:tag (or @digest) of a component's image. */}}
{{- /* A repository that names its registry (ghcr.io/acme/shout, localhost:5000/x: a dot, a colon or
localhost before the first slash) is used as written: image.registry prefixes Baton's own images only. */ -}}
{{- define "baton.image" -}}
{{- $img := .image -}}
{{- $repo := $img.repository -}}
{{- $first := index (splitList "/" $repo) 0 -}}
{{- $qualified := and (contains "/" $repo) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) -}}
{{- if not $qualified }}{{ with .root.Values.image.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}{{ end }}{{ end -}}
{{- $tag := $img.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- if hasPrefix "sha256:" $tag -}}
{{- printf "%s@%s" $repo $tag -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{- define "baton.secretName" -}}
{{- .Values.existingSecret | default (printf "%s-secrets" (include "baton.fullname" .)) -}}
{{- end -}}

{{- define "baton.coordinatorHost" -}}
{{- printf "%s.%s.svc.%s" (include "baton.componentName" (dict "root" . "component" "coordinator")) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* A function's settings: functionDefaults overridden by its entry in `functions`. */}}
{{- define "baton.functionSettings" -}}
{{- $settings := mergeOverwrite (deepCopy .root.Values.functionDefaults) (deepCopy (.fn | default dict)) -}}
{{- $image := $settings.image | default dict -}}
{{- $_ := set $settings "image" (dict "repository" ($image.repository | default (printf "baton-fn-%s" .name)) "tag" ($image.tag | default "")) -}}
{{- toYaml $settings -}}
{{- end -}}

{{/* <FUNCTION>_CONCURRENCY, as sdk/src/function.ts names it. */}}
{{- define "baton.concurrencyEnv" -}}
{{- printf "%s_CONCURRENCY" (. | upper | replace "-" "_" | replace "." "_") -}}
{{- end -}}

{{/* <FUNCTION>_RATE_LIMIT, as sdk/src/function.ts (rateLimitEnvName) names it. */}}
{{- define "baton.rateLimitEnv" -}}
{{- printf "%s_RATE_LIMIT" (. | upper | replace "-" "_" | replace "." "_") -}}
{{- end -}}

{{/* Environment every component reads (engine/src/config.ts). */}}
{{- define "baton.commonEnv" -}}
- name: REDIS_HOST
  value: {{ .Values.redis.host | quote }}
- name: REDIS_PORT
  value: {{ .Values.redis.port | quote }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "baton.secretName" . }}
      key: REDIS_URL
      optional: true
{{- with .Values.redis.clusterNodes }}
- name: REDIS_CLUSTER_NODES
  value: {{ join "," . | quote }}
{{- end }}
- name: BATON_INBOX_SHARDS
  value: {{ .Values.redis.inboxShards | quote }}
- name: BATON_QUEUE_PREFIX
  value: {{ .Values.queuePrefix | quote }}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
# The address this pod's /metrics is registered under (GET /v1/prometheus/targets): pod names do not resolve.
- name: BATON_ADVERTISE_HOST
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- end -}}

{{- define "baton.secretEnv" -}}
- name: {{ .key }}
  valueFrom:
    secretKeyRef:
      name: {{ include "baton.secretName" .root }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{- define "baton.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* Pod-level fields every pod shares. */}}
{{- define "baton.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "baton.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- end -}}

{{- define "baton.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Scrape annotations for a Prometheus that discovers pods (k8s/prometheus). */}}
{{- define "baton.podAnnotations" -}}
{{- if .root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .root.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* NetworkPolicy egress rule: to the given peers (any address when none) on the given TCP ports. */}}
{{- define "baton.egressRule" -}}
- ports:
    {{- range .ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
  {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "baton.dnsEgress" -}}
- ports:
    {{- range .ports }}
    - protocol: UDP
      port: {{ . }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
  {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
API authentication, decided once per render (memoised in .Values, so the Secret, the gateway's
checksum and NOTES.txt see the same generated key). JSON {source, keys}, source one of:
  values          secrets.apiKeys holds at least one key: used as given
  existingSecret  keys are in the Secret the user manages (keys: secrets.apiKeys, unused)
  anonymous       no key and auth.allowAnonymous=true: the API is open
  readonly        the same, but read-only keys are set: the API can be read with them, not changed
  generated       no key: a random one, or the one generated before (lookup of the chart's Secret,
                  annotated baton.io/api-key=generated). Without a cluster (helm template) the lookup
                  finds nothing and each render draws a new key.
*/}}
{{- define "baton.auth" -}}
{{- if not (hasKey .Values "__batonAuth") -}}
{{- $given := .Values.secrets.apiKeys | default "" -}}
{{- $auth := dict "source" "values" "keys" $given -}}
{{- if .Values.existingSecret -}}
{{- $_ := set $auth "source" "existingSecret" -}}
{{- else if regexReplaceAll "[\\s,]+" $given "" -}}
{{- $_ := set $auth "source" "values" -}}
{{- else if .Values.auth.allowAnonymous -}}
{{- $readonly := printf "%s%s" (.Values.secrets.readonlyApiKeys | default "") (get .Values.gateway.extraEnv "BATON_READONLY_API_KEYS" | toString) -}}
{{- $_ := set $auth "source" (ternary "readonly" "anonymous" (ne (regexReplaceAll "[\\s,]+" $readonly "") "")) -}}
{{- else -}}
{{- $kept := "" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "baton.secretName" .) -}}
{{- if $existing -}}
{{- $annotations := (get $existing "metadata" | default dict).annotations | default dict -}}
{{- if eq (get $annotations "baton.io/api-key" | toString) "generated" -}}
{{- $kept = get ((get $existing "data") | default dict) "BATON_API_KEYS" | toString | b64dec | trim -}}
{{- end -}}
{{- end -}}
{{- $_ := set $auth "keys" ($kept | default (randAlphaNum 48)) -}}
{{- $_ := set $auth "source" "generated" -}}
{{- end -}}
{{- $_ := set .Values "__batonAuth" $auth -}}
{{- end -}}
{{- get .Values "__batonAuth" | toJson -}}
{{- end -}}

{{/* checksum/secrets of the gateway: the values' secrets and the API keys in effect (a generated key included). */}}
{{- define "baton.gatewaySecretsChecksum" -}}
{{- $auth := include "baton.auth" . | fromJson -}}
{{- printf "%s|%s" (.Values.secrets | toJson) ($auth.keys | sha256sum) | sha256sum | trunc 16 -}}
{{- end -}}

{{/*
Worst-case PostgreSQL connections: every component that reaches PostgreSQL at its most replicas
(a KEDA-scaled function's maxReplicaCount, otherwise its replica count) times its pool
(databasePoolMax, passed as DATABASE_POOL_MAX). JSON {rows, total, limit, limitName, budget}.
*/}}
{{- define "baton.connectionBudget" -}}
{{- $keda := .Capabilities.APIVersions.Has "keda.sh/v1alpha1/ScaledObject" -}}
{{- $g := .Values.gateway -}}
{{- $c := .Values.coordinator -}}
{{- $rows := list (dict "component" "gateway" "replicas" (int $g.replicaCount) "poolMax" (int $g.databasePoolMax)) -}}
{{- $rows = append $rows (dict "component" "coordinator" "replicas" (int $c.replicaCount) "poolMax" (int $c.databasePoolMax)) -}}
{{- range $fnName, $fnValues := .Values.functions -}}
{{- $f := include "baton.functionSettings" (dict "root" $ "name" $fnName "fn" $fnValues) | fromYaml -}}
{{- if $f.needs.postgres -}}
{{- $replicas := $f.replicaCount -}}
{{- if and $keda $f.autoscaling.enabled -}}
{{- $replicas = $f.autoscaling.maxReplicaCount -}}
{{- end -}}
{{- $rows = append $rows (dict "component" (printf "fn-%s" $fnName) "replicas" (int $replicas) "poolMax" (int $f.databasePoolMax)) -}}
{{- end -}}
{{- end -}}
{{- $total := 0 -}}
{{- range $rows -}}
{{- $total = add $total (mul .replicas .poolMax) -}}
{{- end -}}
{{- $db := .Values.database -}}
{{- $limit := int $db.maxConnections -}}
{{- $limitName := printf "database.maxConnections %d" $limit -}}
{{- if $db.pooled -}}
{{- $limit = int $db.poolerMaxClientConnections -}}
{{- $limitName = printf "database.poolerMaxClientConnections %d" $limit -}}
{{- end -}}
{{- $budget := sub $limit (int $db.reservedConnections) -}}
{{- dict "rows" $rows "total" $total "limit" $limit "limitName" $limitName "reserved" (int $db.reservedConnections) "budget" $budget | toJson -}}
{{- end -}}

{{/* Render-time checks (templates/checks.yaml): each stops the render with one message saying what to change. */}}
{{- define "baton.checks" -}}
{{- $b := include "baton.connectionBudget" . | fromJson -}}
{{- if le (int $b.budget) 0 -}}
{{- fail (printf "database.reservedConnections (%v) leaves no PostgreSQL connection for Baton out of %s." $b.reserved $b.limitName) -}}
{{- end -}}
{{- if gt (int $b.total) (int $b.budget) -}}
{{- $parts := list -}}
{{- range $b.rows -}}
{{- $parts = append $parts (printf "%s %v×%v" .component .replicas .poolMax) -}}
{{- end -}}
{{- fail (printf "connection budget: Baton needs up to %v PostgreSQL connections at full scale (replicas × pool: %s), over the budget of %v (%s − database.reservedConnections %v). Lower replicas (gateway.replicaCount, coordinator.replicaCount, functionDefaults.autoscaling.maxReplicaCount, functions.<name>.autoscaling.maxReplicaCount) or pools (gateway.databasePoolMax, coordinator.databasePoolMax, functionDefaults.databasePoolMax, functions.<name>.databasePoolMax); or raise database.maxConnections to your server's max_connections; or put PgBouncer in front and set database.pooled=true (docs/SCALING.md, Connection budget)." $b.total (join ", " $parts) $b.budget $b.limitName $b.reserved) -}}
{{- end -}}
{{- $c := .Values.coordinator -}}
{{- $floor := add $c.concurrency $c.inboxLoops 1 -}}
{{- if lt (int $c.databasePoolMax) (int $floor) -}}
{{- fail (printf "coordinator.databasePoolMax (%v) is below coordinator.concurrency (%v) + coordinator.inboxLoops (%v) + 1: its BullMQ handlers and inbox loops would wait for connections. Set it to at least %v (concurrency + inboxLoops + 4 leaves room for the reconciler and queue metrics), or lower coordinator.concurrency." $c.databasePoolMax $c.concurrency $c.inboxLoops $floor) -}}
{{- end -}}
{{- if hasKey .Values.gateway.extraEnv "BATON_API_KEYS" -}}
{{- fail "gateway.extraEnv.BATON_API_KEYS: put API keys in secrets.apiKeys or in the existingSecret, not in the Deployment's plain environment." -}}
{{- end -}}
{{- if and .Values.existingSecret (not .Values.auth.allowAnonymous) -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace .Values.existingSecret -}}
{{- if $secret -}}
{{- $keys := get ((get $secret "data") | default dict) "BATON_API_KEYS" | toString | b64dec -}}
{{- if not (regexReplaceAll "[\\s,]+" $keys "") -}}
{{- fail (printf "existingSecret %s holds no BATON_API_KEYS (missing or empty): the gateway would not start, or run without authentication. Add a key to it (kubectl -n %s patch secret %s --type merge -p \"{\\\"stringData\\\":{\\\"BATON_API_KEYS\\\":\\\"$(openssl rand -hex 24)\\\"}}\"), or set auth.allowAnonymous=true to run the API open." .Values.existingSecret .Release.Namespace .Values.existingSecret) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
