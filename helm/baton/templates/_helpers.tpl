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
{{- define "baton.image" -}}
{{- $img := .image -}}
{{- $repo := $img.repository -}}
{{- with .root.Values.image.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}{{ end -}}
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

{{/* <FUNCTION>_CONCURRENCY, as shared/src/runtime/function.ts names it. */}}
{{- define "baton.concurrencyEnv" -}}
{{- printf "%s_CONCURRENCY" (. | upper | replace "-" "_" | replace "." "_") -}}
{{- end -}}

{{/* Environment every component reads (shared/src/config.ts). */}}
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
