{{- define "td.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "td.fullname" -}}
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

{{/* Standard labels. Call with (dict "ctx" $ "component" "server"). */}}
{{- define "td.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{ include "td.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: trip-duration
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels: name + instance (+ component, so components never select each other). */}}
{{- define "td.selectorLabels" -}}
app.kubernetes.io/name: {{ include "td.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "td.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{- define "td.serverUrl" -}}
{{- printf "http://%s-server:%d/api" (include "td.fullname" .) (int .Values.server.service.port) -}}
{{- end -}}

{{- define "td.mlflowUrl" -}}
{{- printf "http://%s-mlflow:%d" (include "td.fullname" .) (int .Values.mlflow.port) -}}
{{- end -}}

{{- define "td.postgresHost" -}}
{{- printf "%s-postgresql" (include "td.fullname" .) -}}
{{- end -}}

{{- define "td.postgresSecret" -}}
{{- default (printf "%s-postgresql" (include "td.fullname" .)) .Values.postgresql.auth.existingSecret -}}
{{- end -}}

{{- define "td.needsPostgres" -}}
{{- if or (and (eq .Values.apiMode "server") (eq .Values.server.database.mode "bundled")) (and .Values.mlflow.enabled (eq .Values.mlflow.database.mode "bundled")) -}}true{{- end -}}
{{- end -}}

{{/* Environment that points a Prefect client (worker, hook Job) at the API. */}}
{{- define "td.prefectClientEnv" -}}
{{- if eq .Values.apiMode "cloud" }}
- name: PREFECT_API_URL
  value: {{ printf "https://api.prefect.cloud/api/accounts/%s/workspaces/%s" .Values.worker.cloud.accountId .Values.worker.cloud.workspaceId | quote }}
- name: PREFECT_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.worker.cloud.apiKeySecretName }}
      key: {{ .Values.worker.cloud.apiKeySecretKey }}
{{- else }}
- name: PREFECT_API_URL
  value: {{ include "td.serverUrl" . | quote }}
{{- if include "td.apiAuthEnabled" . }}
- name: PREFECT_API_AUTH_STRING
  valueFrom:
    secretKeyRef:
      name: {{ include "td.apiAuthSecret" . }}
      key: {{ .Values.server.auth.key }}
{{- end }}
{{- end }}
- name: PREFECT_SERVER_ANALYTICS_ENABLED
  value: "false"
- name: HOME
  value: /tmp
{{- end -}}

{{/* S3 settings as env entries (credentials only by reference). */}}
{{- define "td.s3Env" -}}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.s3.region | quote }}
{{- if .Values.s3.endpoint }}
- name: AWS_ENDPOINT_URL_S3
  value: {{ .Values.s3.endpoint | quote }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ .Values.s3.endpoint | quote }}
{{- end }}
{{- if .Values.s3.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ .Values.s3.existingSecret }}, key: AWS_ACCESS_KEY_ID}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ .Values.s3.existingSecret }}, key: AWS_SECRET_ACCESS_KEY}
{{- end }}
{{- end -}}

{{- define "td.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "td.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end -}}

{{- define "td.uiApiUrl" -}}
{{- if .Values.server.uiApiUrl -}}
{{- .Values.server.uiApiUrl -}}
{{- else if .Values.server.ingress.enabled -}}
{{- printf "%s://%s/api" (ternary "https" "http" (ne .Values.server.ingress.tlsSecretName "")) .Values.server.ingress.host -}}
{{- else -}}
{{- printf "http://localhost:%d/api" (int .Values.server.service.port) -}}
{{- end -}}
{{- end -}}

{{/* Prefect server database settings: bundled PostgreSQL or an external one, password by reference. */}}
{{- define "td.serverDatabaseEnv" -}}
- name: PREFECT_SERVER_DATABASE_DRIVER
  value: postgresql+asyncpg
{{- if eq .Values.server.database.mode "external" }}
{{- range $var, $key := dict "HOST" "host" "PORT" "port" "USER" "user" "PASSWORD" "password" "NAME" "database" }}
- name: PREFECT_SERVER_DATABASE_{{ $var }}
  valueFrom:
    secretKeyRef: {name: {{ $.Values.server.database.existingSecret }}, key: {{ $key }}}
{{- end }}
{{- else }}
- name: PREFECT_SERVER_DATABASE_HOST
  value: {{ include "td.postgresHost" . }}
- name: PREFECT_SERVER_DATABASE_PORT
  value: "5432"
- name: PREFECT_SERVER_DATABASE_USER
  value: {{ .Values.postgresql.auth.username | quote }}
- name: PREFECT_SERVER_DATABASE_NAME
  value: {{ .Values.postgresql.auth.database | quote }}
- name: PREFECT_SERVER_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ include "td.postgresSecret" . }}, key: password}
{{- end }}
{{- end -}}

{{/* Whether the chart talks to a cluster (`lookup` works): every namespace has ServiceAccount "default"; `helm template` sees none. */}}
{{- define "td.clusterReachable" -}}
{{- if lookup "v1" "ServiceAccount" .Release.Namespace "default" -}}true{{- end -}}
{{- end -}}

{{- define "td.apiAuthEnabled" -}}
{{- if and (eq .Values.apiMode "server") .Values.server.auth.enabled -}}true{{- end -}}
{{- end -}}

{{- define "td.apiAuthSecret" -}}
{{- default (printf "%s-api-auth" (include "td.fullname" .)) .Values.server.auth.existingSecret -}}
{{- end -}}

{{- define "td.mlflowAuthEnabled" -}}
{{- if and .Values.mlflow.enabled .Values.mlflow.auth.enabled -}}true{{- end -}}
{{- end -}}

{{- define "td.mlflowAuthSecret" -}}
{{- default (printf "%s-mlflow-auth" (include "td.fullname" .)) .Values.mlflow.auth.existingSecret -}}
{{- end -}}

{{/* A password generated once and kept: the existing Secret's key when there is one, else a new random value.
Call with (dict "ctx" $ "secret" NAME "key" KEY "value" NEW); prints the base64 value. */}}
{{- define "td.keptSecretValue" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key -}}
{{- else -}}
{{- .value | b64enc -}}
{{- end -}}
{{- end -}}

{{/* imagePullSecrets of every pod. */}}
{{- define "td.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "td.np.to" -}}
{{- /* an egress/ingress peer: pods of one component of this release. Call with (dict "ctx" $ "component" NAME). */ -}}
- podSelector:
    matchLabels: {{- include "td.selectorLabels" . | nindent 6 }}
{{- end -}}
{{- define "td.np.dns" -}}
- to:
    - namespaceSelector: {}
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end -}}
