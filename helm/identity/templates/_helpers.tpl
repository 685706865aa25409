{{/* Names */}}
{{- define "identity.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "identity.fullname" -}}
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

{{- define "identity.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels */}}
{{- define "identity.selectorLabels" -}}
app.kubernetes.io/name: {{ include "identity.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "identity.labels" -}}
helm.sh/chart: {{ include "identity.chart" . }}
{{ include "identity.selectorLabels" . }}
app.kubernetes.io/version: {{ include "identity.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: identity
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The server pods (Deployment, Service, PDB, HPA, ServiceMonitor select these). */}}
{{- define "identity.serverSelectorLabels" -}}
{{ include "identity.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "identity.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "identity.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image */}}
{{- define "identity.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "identity.image" -}}
{{- $tag := include "identity.imageTag" . }}
{{- if eq (lower $tag) "latest" }}
{{- fail "identity: image.tag \"latest\" is refused: set image.tag to a release version (or image.digest)" }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Secrets */}}
{{- define "identity.secretName" -}}
{{- default (printf "%s-secrets" (include "identity.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{/* The key of the Secret holding each signing key, as a JSON list. */}}
{{- define "identity.signingKeyKeys" -}}
{{- if .Values.secrets.existingSecret }}
{{- toJson .Values.secrets.keys.signingKeys }}
{{- else }}
{{- $keys := list }}
{{- range $i, $_ := .Values.secrets.create.signingKeys }}
{{- $keys = append $keys (printf "signing-key-%d.pem" $i) }}
{{- end }}
{{- toJson $keys }}
{{- end }}
{{- end }}

{{- define "identity.signingKeyFiles" -}}
{{- $files := list }}
{{- range (include "identity.signingKeyKeys" . | fromJsonArray) }}
{{- $files = append $files (printf "/etc/identity/signing/%s" .) }}
{{- end }}
{{- join "," $files }}
{{- end }}

{{- define "identity.secretKeyKey" -}}
{{- if .Values.secrets.existingSecret }}{{ .Values.secrets.keys.secretKey }}{{ else }}secret-key{{ end }}
{{- end }}

{{- define "identity.databaseUrlKey" -}}
{{- if .Values.secrets.existingSecret }}{{ .Values.secrets.keys.databaseUrl }}{{ else }}database-url{{ end }}
{{- end }}

{{- define "identity.redisUrlKey" -}}
{{- if .Values.secrets.existingSecret }}{{ .Values.secrets.keys.redisUrl }}{{ else }}redis-url{{ end }}
{{- end }}

{{/*
Checks that fail the render with a message naming the setting to fix. Included
by every template that depends on them, so `helm template` of any single file
fails the same way.
*/}}
{{- define "identity.validate" -}}
{{- $s := .Values.secrets }}
{{- $c := $s.create }}
{{- $hs := eq .Values.signing.algorithm "HS256" }}
{{- if not $s.existingSecret }}
{{- if not (or $c.databaseUrl $c.signingKeys $c.secretKey) }}
{{- fail "identity: no Secret configured, and the chart has no default one. Set secrets.existingSecret to the name of a Secret holding `database-url` and `signing-key.pem` (PEM from `identity keygen`), or set secrets.create.databaseUrl and secrets.create.signingKeys[0] to let the chart create it. See docs/deploy-helm.md." }}
{{- end }}
{{- if not $c.databaseUrl }}
{{- fail "identity: secrets.create.databaseUrl is empty: set it (postgres://...) or use secrets.existingSecret" }}
{{- end }}
{{- if $hs }}
{{- if lt (len $c.secretKey) 32 }}
{{- fail "identity: signing.algorithm=HS256 needs secrets.create.secretKey of at least 32 bytes (or secrets.existingSecret)" }}
{{- end }}
{{- else if not $c.signingKeys }}
{{- fail "identity: signing.algorithm=EdDSA needs secrets.create.signingKeys[0] (a PEM from `identity keygen`) or secrets.existingSecret" }}
{{- end }}
{{- if and .Values.rateLimit.redis.enabled (not $c.redisUrl) }}
{{- fail "identity: rateLimit.redis.enabled needs secrets.create.redisUrl (or secrets.existingSecret with key secrets.keys.redisUrl)" }}
{{- end }}
{{- else }}
{{- if or $c.databaseUrl $c.redisUrl $c.signingKeys $c.secretKey $c.revocationListenUrl }}
{{- fail "identity: set either secrets.existingSecret or secrets.create.*, not both" }}
{{- end }}
{{- if and (not $hs) (not $s.keys.signingKeys) }}
{{- fail "identity: secrets.keys.signingKeys must name at least one key of secrets.existingSecret" }}
{{- end }}
{{- end }}
{{- if .Values.migrations.enabled }}
{{- $m := .Values.migrations }}
{{- if $m.existingSecret }}
{{- if and (eq $m.existingSecret $s.existingSecret) (eq $m.databaseUrlKey $s.keys.databaseUrl) }}
{{- fail "identity: migrations.databaseUrlKey names the server's own database URL: the migration Job needs the migration user's URL (the schema's owner), under another key or in another Secret. See README \"Database roles\"." }}
{{- end }}
{{- if $c.migrationDatabaseUrl }}
{{- fail "identity: set either migrations.existingSecret or secrets.create.migrationDatabaseUrl, not both" }}
{{- end }}
{{- else if not $c.migrationDatabaseUrl }}
{{- fail "identity: migrations need their own database user: set migrations.existingSecret (a Secret holding the migration user's URL under migrations.databaseUrlKey) or secrets.create.migrationDatabaseUrl. See README \"Database roles\"." }}
{{- else if eq $c.migrationDatabaseUrl $c.databaseUrl }}
{{- fail "identity: secrets.create.migrationDatabaseUrl equals secrets.create.databaseUrl: the migration user (owner of the schema) must not be the server's user. See README \"Database roles\"." }}
{{- end }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) }}
{{- fail "identity: tls.enabled needs tls.existingSecret (a kubernetes.io/tls Secret with tls.crt and tls.key)" }}
{{- end }}
{{- if and .Values.tls.clientCA.enabled (not .Values.tls.enabled) }}
{{- fail "identity: tls.clientCA.enabled needs tls.enabled" }}
{{- end }}
{{- if and .Values.tls.clientCA.crl.enabled (not .Values.tls.clientCA.enabled) }}
{{- fail "identity: tls.clientCA.crl.enabled needs tls.clientCA.enabled" }}
{{- end }}
{{- if and .Values.tls.clientCA.allowedSANs (not .Values.tls.clientCA.enabled) }}
{{- fail "identity: tls.clientCA.allowedSANs needs tls.clientCA.enabled" }}
{{- end }}
{{- if and (not .Values.tls.enabled) (not .Values.tls.allowPlaintext) }}
{{- fail "identity: TLS is off and tls.allowPlaintext is false: set tls.enabled=true with tls.existingSecret, or tls.allowPlaintext=true when a mesh encrypts traffic" }}
{{- end }}
{{- if and .Values.provider.enabled (not (and .Values.provider.jwksUrl .Values.provider.issuer)) }}
{{- fail "identity: provider.enabled needs provider.jwksUrl and provider.issuer" }}
{{- end }}
{{- if and .Values.otel.enabled (not .Values.otel.endpoint) }}
{{- fail "identity: otel.enabled needs otel.endpoint (e.g. http://otel-collector.observability.svc:4317)" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "identity: metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- if and .Values.grafanaDashboard.enabled (not .Values.metrics.enabled) }}
{{- fail "identity: grafanaDashboard.enabled needs metrics.enabled (the dashboard reads the service's /metrics)" }}
{{- end }}
{{- if and .Values.prometheusRule.enabled (not .Values.metrics.enabled) }}
{{- fail "identity: prometheusRule.enabled needs metrics.enabled (the alerts read the service's /metrics)" }}
{{- end }}
{{- if and (not (kindIs "invalid" .Values.terminationGracePeriodSeconds)) (le (int .Values.terminationGracePeriodSeconds) (add (include "identity.preStopSleep" .) .Values.config.shutdownGraceSeconds | int)) }}
{{- fail "identity: terminationGracePeriodSeconds must exceed preStopSleepSeconds + config.shutdownGraceSeconds, or the server is killed mid-drain" }}
{{- end }}
{{- if and .Values.wellKnown.enabled .Values.tls.enabled }}
{{- $url := include "identity.wellKnownPublicUrl" . }}
{{- if hasPrefix "http://" $url }}
{{- fail "identity: wellKnown.publicUrl: with tls.enabled the server refuses a plain-http jwks_uri (verifiers would fetch the signing keys without TLS). Set wellKnown.publicUrl (or config.issuer) to the https:// URL of an ingress in front of ports.http, or wellKnown.enabled=false." }}
{{- end }}
{{- end }}
{{- end }}

{{/* preStop sleep seconds actually used (the sleep action needs Kubernetes 1.30+). */}}
{{- define "identity.preStopSleep" -}}
{{- if semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version }}{{ int .Values.preStopSleepSeconds }}{{ else }}0{{ end }}
{{- end }}

{{- define "identity.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add (include "identity.preStopSleep" . | int) .Values.config.shutdownGraceSeconds 10 }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* Volumes and mounts shared by nothing else: /tmp, signing keys, TLS. */}}
{{- define "identity.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{/* Pod-level hardening shared by every pod of the chart. */}}
{{- define "identity.podSpecCommon" -}}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
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
{{- end }}

{{/*
IDENTITY_HTTP_PUBLIC_URL to render, or "" when the server derives it from an
https:// issuer. Default: the in-cluster Service, over plain HTTP.
*/}}
{{- define "identity.wellKnownPublicUrl" -}}
{{- $w := .Values.wellKnown }}
{{- if $w.publicUrl }}
{{- $w.publicUrl }}
{{- else if not (hasPrefix "https://" .Values.config.issuer) }}
{{- printf "http://%s.%s.svc:%d" (include "identity.fullname" .) .Release.Namespace (int .Values.ports.http) }}
{{- end }}
{{- end }}
