{{/*
Names, labels and the pieces every workload shares. Components are "api", "worker",
"migrations" and "bootstrap"; each carries app.kubernetes.io/component so selectors, PDBs,
NetworkPolicies and alerts can tell them apart.
*/}}

{{- define "brik.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "brik.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<suffix>", kept within the 63 characters of a DNS label. */}}
{{- define "brik.componentName" -}}
{{- printf "%s-%s" (include "brik.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix }}
{{- end }}

{{- define "brik.selectorLabels" -}}
app.kubernetes.io/name: {{ include "brik.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "brik.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "brik.selectorLabels" . }}
app.kubernetes.io/version: {{ include "brik.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: brik-cloud
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component: (dict "root" $ "component" "api") */}}
{{- define "brik.componentLabels" -}}
{{ include "brik.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "brik.componentSelectorLabels" -}}
{{ include "brik.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "brik.annotations" -}}
{{- with .Values.commonAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "brik.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "brik.image" -}}
{{- $repository := .Values.image.repository }}
{{- if .Values.image.registry }}
{{- $repository = printf "%s/%s" .Values.image.registry .Values.image.repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (include "brik.imageTag" .) }}
{{- end }}
{{- end }}

{{- define "brik.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "brik.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding BRIK_SECRET_KEY, BRIK_ENCRYPTION_KEYS and the other secret settings. */}}
{{- define "brik.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "brik.fullname" .) }}
{{- end }}

{{- define "brik.configMapName" -}}
{{- include "brik.componentName" (dict "root" . "suffix" "config") }}
{{- end }}

{{- define "brik.bootstrapSecretName" -}}
{{- .Values.bootstrap.secretName | default (include "brik.componentName" (dict "root" . "suffix" "bootstrap")) }}
{{- end }}

{{- define "brik.workerMetricsServiceName" -}}
{{- include "brik.componentName" (dict "root" . "suffix" "worker-metrics") }}
{{- end }}

{{/*
The URL users reach the API at: config.publicBaseUrl, else the first Ingress host (https when
TLS covers it), else nothing (the application's default).
*/}}
{{- define "brik.publicBaseUrl" -}}
{{- if .Values.config.publicBaseUrl }}
{{- .Values.config.publicBaseUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := (first .Values.ingress.hosts).host }}
{{- $secure := false }}
{{- range .Values.ingress.tls }}
{{- if has $host .hosts }}{{ $secure = true }}{{ end }}
{{- end }}
{{- printf "%s://%s" (ternary "https" "http" $secure) $host }}
{{- end }}
{{- end }}

{{/*
The non-secret settings as BRIK_* variables: every key of .Values.config (camelCase of a
setting), lists joined with commas. The ConfigMap holds them.
*/}}
{{/*
Where export archives live in the pods (BRIK_EXPORT_DIR): the operator's shared claim, or an
emptyDir (see values.yaml, exports).
*/}}
{{- define "brik.exportsVolume" -}}
- name: exports
{{- if .Values.exports.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.exports.existingClaim }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .Values.exports.sizeLimit }}
{{- end }}
{{- end }}

{{- define "brik.configEnv" -}}
{{- $config := omit .Values.config "publicBaseUrl" }}
{{- if not (hasKey $config "exportDir") }}
{{- $_ := set $config "exportDir" "/var/lib/brik/exports" }}
{{- end }}
{{- $publicBaseUrl := include "brik.publicBaseUrl" . }}
{{- if $publicBaseUrl }}
{{- $_ := set $config "publicBaseUrl" $publicBaseUrl }}
{{- end }}
{{- range $key := keys $config | sortAlpha }}
{{- $value := get $config $key }}
{{- if kindIs "slice" $value }}
{{- $value = join "," $value }}
{{- end }}
{{- /* Helm reads every number of a values file as a float, which toString writes as 1e+06
(no integer setting parses that); JSON writes it out in full, as 1000000. */}}
{{- if kindIs "float64" $value }}
{{- $value = toJson $value }}
{{- end }}
{{- if not (kindIs "invalid" $value) }}
BRIK_{{ $key | snakecase | upper }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The secret settings the chart writes into its own Secret (not with secrets.existingSecret).
The secret key and the encryption key are generated at install when not given, and read back
from the live Secret at every upgrade, so they never change behind the operator's back.
*/}}
{{- define "brik.secretEnv" -}}
{{- $live := dict }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "brik.fullname" .) }}
{{- if $existing }}
{{- $live = $existing.data | default dict }}
{{- end }}
{{- $secretKey := .Values.secrets.secretKey }}
{{- if not $secretKey }}
{{- if hasKey $live "BRIK_SECRET_KEY" }}
{{- $secretKey = get $live "BRIK_SECRET_KEY" | b64dec }}
{{- else if .Release.IsUpgrade }}
{{- fail "secrets.secretKey is not set and the Secret holding the generated one cannot be read (an upgrade without cluster access, such as helm template or a client-side dry run): set secrets.secretKey and secrets.encryptionKeys, or secrets.existingSecret, rather than let new keys be generated over the ones in use." }}
{{- else }}
{{- $secretKey = (include "brik.generated" . | fromJson).secretKey }}
{{- end }}
{{- end }}
{{- $encryptionKeys := join "," .Values.secrets.encryptionKeys }}
{{- if not $encryptionKeys }}
{{- if hasKey $live "BRIK_ENCRYPTION_KEYS" }}
{{- $encryptionKeys = get $live "BRIK_ENCRYPTION_KEYS" | b64dec }}
{{- else if .Release.IsUpgrade }}
{{- fail "secrets.encryptionKeys is not set and the Secret holding the generated one cannot be read: set secrets.encryptionKeys (newest first) or secrets.existingSecret." }}
{{- else }}
{{- $encryptionKeys = (include "brik.generated" . | fromJson).encryptionKey }}
{{- end }}
{{- end }}
BRIK_SECRET_KEY: {{ $secretKey | b64enc | quote }}
BRIK_ENCRYPTION_KEYS: {{ $encryptionKeys | b64enc | quote }}
{{- with .Values.secrets.previousSecretKeys }}
BRIK_PREVIOUS_SECRET_KEYS: {{ join "," . | b64enc | quote }}
{{- end }}
{{- with .Values.database.url }}
BRIK_DATABASE_URL: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.redis.url }}
BRIK_REDIS_URL: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.secrets.oidcClientSecret }}
BRIK_OIDC_CLIENT_SECRET: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.secrets.smtpUrl }}
BRIK_SMTP_URL: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.secrets.stripeSecretKey }}
BRIK_STRIPE_SECRET_KEY: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.secrets.stripeWebhookSecret }}
BRIK_STRIPE_WEBHOOK_SECRET: {{ . | b64enc | quote }}
{{- end }}
{{- end }}

{{/*
Keys generated at install, once per render: the Secret and the checksum that rolls the pods
must see the same ones. A Fernet key is 32 random bytes in URL-safe base64.
*/}}
{{- define "brik.generated" -}}
{{- if not (hasKey .Values "_generatedKeys") }}
{{- $fernet := randBytes 32 | replace "+" "-" | replace "/" "_" }}
{{- $_ := set .Values "_generatedKeys" (dict "secretKey" (randAlphaNum 64) "encryptionKey" $fernet) }}
{{- end }}
{{- get .Values "_generatedKeys" | toJson }}
{{- end }}

{{/* Whether the chart generates keys (it says so in NOTES). */}}
{{- define "brik.generatesKeys" -}}
{{- if and (not .Values.secrets.existingSecret) (or (not .Values.secrets.secretKey) (not .Values.secrets.encryptionKeys)) }}true{{ end }}
{{- end }}

{{/*
Where the database and Redis URLs come from: a key of their own existing Secret (an operator's,
such as CloudNativePG's "<cluster>-app" and its "uri"), or the chart's Secret through envFrom.
*/}}
{{- define "brik.connectionEnv" -}}
{{- if .Values.database.existingSecret }}
- name: BRIK_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.existingSecretKey }}
{{- end }}
{{- if .Values.redis.existingSecret }}
- name: BRIK_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.existingSecretKey }}
{{- end }}
{{- end }}

{{/* Fail early, with the value to set, on what no pod could run without. */}}
{{- define "brik.validate" -}}
{{- $extraEnv := list }}
{{- range .Values.api.extraEnv }}{{ $extraEnv = append $extraEnv .name }}{{ end }}
{{- if and (not .Values.database.url) (not .Values.database.existingSecret) (not .Values.secrets.existingSecret) (not (has "BRIK_DATABASE_URL" $extraEnv)) }}
{{- fail "Set database.url (postgres://user:password@host:5432/brik) or database.existingSecret: Brik Cloud keeps its data in your PostgreSQL." }}
{{- end }}
{{- if and (not .Values.redis.url) (not .Values.redis.existingSecret) (not .Values.secrets.existingSecret) (not (has "BRIK_REDIS_URL" $extraEnv)) }}
{{- fail "Set redis.url (redis://host:6379/0) or redis.existingSecret: the job queue, rate limits and locks live in your Redis." }}
{{- end }}
{{- if and .Values.secrets.existingSecret (or .Values.database.url .Values.redis.url) }}
{{- fail "With secrets.existingSecret the chart writes no Secret, so database.url and redis.url have nowhere to go: put BRIK_DATABASE_URL and BRIK_REDIS_URL in that Secret, or use database.existingSecret and redis.existingSecret." }}
{{- end }}
{{- if and .Values.worker.autoscaling.keda.enabled .Values.worker.autoscaling.hpa.enabled }}
{{- fail "worker.autoscaling: enable keda or hpa, not both (each would own the worker Deployment's replicas)." }}
{{- end }}
{{- if and .Values.worker.autoscaling.hpa.enabled (not .Values.worker.metrics.enabled) }}
{{- fail "worker.autoscaling.hpa scales on brik_queue_depth through Prometheus: it needs the metrics (worker.metrics.enabled)." }}
{{- end }}
{{- if and .Values.worker.autoscaling.keda.enabled (not .Values.worker.autoscaling.keda.redisAddress) }}
{{- fail "worker.autoscaling.keda.redisAddress (host:port of your Redis) is required: KEDA reads the queue length from Redis itself." }}
{{- end }}
{{- end }}

{{/* Pod and container security contexts shared by every pod of the chart. */}}
{{- define "brik.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "brik.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/*
The environment of the API and worker containers: ConfigMap, the chart's (or your) Secret,
URLs from their own Secrets, extra variables. (dict "root" $ "extraEnv" list "extraEnvFrom" list)
*/}}
{{- define "brik.containerEnv" -}}
{{- $root := .root }}
envFrom:
  - configMapRef:
      name: {{ include "brik.configMapName" $root }}
  - secretRef:
      name: {{ include "brik.secretName" $root }}
{{- with .extraEnvFrom }}
{{ toYaml . | indent 2 }}
{{- end }}
{{- $connection := include "brik.connectionEnv" $root }}
{{- if or $connection .extraEnv .env }}
env:
{{- with .env }}
{{ toYaml . | indent 2 }}
{{- end }}
{{- with $connection }}
{{ . | trim | indent 2 }}
{{- end }}
{{- with .extraEnv }}
{{ tpl (toYaml .) $root | indent 2 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod anti-affinity by node from a preset ("soft" or "hard"); "" adds none. */}}
{{- define "brik.affinity" -}}
{{- $root := .root }}
{{- if .affinity }}
{{- toYaml .affinity }}
{{- else if eq .preset "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "brik.componentSelectorLabels" (dict "root" $root "component" .component) | nindent 12 }}
{{- else if eq .preset "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "brik.componentSelectorLabels" (dict "root" $root "component" .component) | nindent 10 }}
{{- end }}
{{- end }}

{{/* Spread across zones (whenUnsatisfiable from zoneSpread), unless constraints are given. */}}
{{- define "brik.topologySpread" -}}
{{- $root := .root }}
{{- if .constraints }}
{{- tpl (toYaml .constraints) $root }}
{{- else if .zoneSpread }}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: {{ .zoneSpread }}
  labelSelector:
    matchLabels:
      {{- include "brik.componentSelectorLabels" (dict "root" $root "component" .component) | nindent 6 }}
  matchLabelKeys:
    - pod-template-hash
{{- end }}
{{- end }}

{{/* Checksums that roll the pods when their configuration or secrets change. */}}
{{- define "brik.checksums" -}}
checksum/config: {{ include "brik.configEnv" . | sha256sum }}
{{- if .Values.secrets.existingSecret }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace .Values.secrets.existingSecret }}
checksum/secret: {{ ($existing.data | default dict) | toJson | sha256sum }}
{{- else }}
checksum/secret: {{ include "brik.secretEnv" . | sha256sum }}
{{- end }}
{{- end }}
