{{/* Names ------------------------------------------------------------------------------- */}}

{{- define "factory.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource-name prefix: the release name, plus the chart name when the release name lacks it. */}}
{{- define "factory.fullname" -}}
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

{{- define "factory.mlflow.fullname" -}}{{ include "factory.fullname" . }}-mlflow{{- end -}}
{{- define "factory.postgresql.fullname" -}}{{ include "factory.fullname" . }}-postgresql{{- end -}}
{{- define "factory.minio.fullname" -}}{{ include "factory.fullname" . }}-minio{{- end -}}

{{- define "factory.serviceAccountName" -}}
{{- default (printf "%s-pipeline" (include "factory.fullname" .)) .Values.pipeline.serviceAccount.name -}}
{{- end -}}

{{/* Labels ------------------------------------------------------------------------------ */}}

{{- define "factory.selectorLabels" -}}
app.kubernetes.io/name: {{ include "factory.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "factory.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "factory.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nemotron-factory
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "mlflow"). */}}
{{- define "factory.componentSelectorLabels" -}}
{{ include "factory.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "factory.componentLabels" -}}
{{ include "factory.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Images ------------------------------------------------------------------------------ */}}

{{/* repository:tag, the tag defaulting to the chart's appVersion: (dict "image" .. "ctx" $). */}}
{{- define "factory.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{- define "factory.mlflow.image" -}}
{{- if .Values.mlflow.image.repository -}}
{{- include "factory.image" (dict "image" .Values.mlflow.image "ctx" .) -}}
{{- else -}}
{{- include "factory.image" (dict "image" .Values.images.cpu "ctx" .) -}}
{{- end -}}
{{- end -}}

{{/* The imagePullSecrets field, or nothing when there are none (call it through `with`). */}}
{{- define "factory.imagePullSecrets" -}}
{{- with .Values.images.pullSecrets -}}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* Security contexts --------------------------------------------------------------------- */}}

{{/* Pod securityContext; (dict "ctx" $ "user" 999) overrides the user, group and fsGroup. */}}
{{- define "factory.podSecurityContext" -}}
{{- $sc := deepCopy .ctx.Values.podSecurityContext -}}
{{- if .user -}}
{{- $_ := set $sc "runAsUser" .user -}}
{{- $_ := set $sc "runAsGroup" .user -}}
{{- $_ := set $sc "fsGroup" .user -}}
{{- end -}}
{{- toYaml $sc -}}
{{- end -}}

{{- define "factory.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/* Postgres ------------------------------------------------------------------------------ */}}

{{- define "factory.postgresql.secretName" -}}
{{- if .Values.postgresql.enabled -}}
{{- default (include "factory.postgresql.fullname" .) .Values.postgresql.auth.existingSecret -}}
{{- else -}}
{{- required "externalDatabase.existingSecret is required when postgresql.enabled is false" .Values.externalDatabase.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "factory.postgresql.passwordKey" -}}
{{- if .Values.postgresql.enabled -}}{{ .Values.postgresql.auth.passwordKey }}{{- else -}}{{ .Values.externalDatabase.passwordKey }}{{- end -}}
{{- end -}}

{{- define "factory.postgresql.host" -}}
{{- if .Values.postgresql.enabled -}}
{{- include "factory.postgresql.fullname" . -}}
{{- else -}}
{{- required "externalDatabase.host is required when postgresql.enabled is false" .Values.externalDatabase.host -}}
{{- end -}}
{{- end -}}

{{- define "factory.postgresql.port" -}}
{{- if .Values.postgresql.enabled -}}5432{{- else -}}{{ .Values.externalDatabase.port }}{{- end -}}
{{- end -}}

{{- define "factory.postgresql.database" -}}
{{- if .Values.postgresql.enabled -}}{{ .Values.postgresql.database }}{{- else -}}{{ .Values.externalDatabase.database }}{{- end -}}
{{- end -}}

{{- define "factory.postgresql.username" -}}
{{- if .Values.postgresql.enabled -}}{{ .Values.postgresql.username }}{{- else -}}{{ .Values.externalDatabase.username }}{{- end -}}
{{- end -}}

{{/* S3 ------------------------------------------------------------------------------------ */}}

{{- define "factory.s3.secretName" -}}
{{- if .Values.s3.existingSecret -}}
{{- .Values.s3.existingSecret -}}
{{- else if .Values.minio.enabled -}}
{{- printf "%s-s3" (include "factory.fullname" .) -}}
{{- else -}}
{{- required "s3.existingSecret is required when minio.enabled is false" "" -}}
{{- end -}}
{{- end -}}

{{/* S3 endpoint URL: the bundled MinIO's service, else s3.endpoint (empty for AWS S3). */}}
{{- define "factory.s3.endpoint" -}}
{{- if .Values.minio.enabled -}}
{{- printf "http://%s.%s.svc.%s:9000" (include "factory.minio.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- else -}}
{{- .Values.s3.endpoint -}}
{{- end -}}
{{- end -}}

{{/* env entries with the S3 access keys, read from the S3 Secret. */}}
{{- define "factory.s3.credentialsEnv" -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "factory.s3.secretName" . }}
      key: {{ .Values.s3.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "factory.s3.secretName" . }}
      key: {{ .Values.s3.secretAccessKeyKey }}
{{- end -}}

{{- define "factory.mlflow.trackingUri" -}}
{{- printf "http://%s.%s.svc.%s:%d" (include "factory.mlflow.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.mlflow.service.port) -}}
{{- end -}}

{{/* Generated credentials ----------------------------------------------------------------- */}}

{{/*
A random value for one key of a generated Secret, base64-encoded; an existing Secret of that name
keeps its value so that upgrades never rotate a password under a running database:
(dict "ctx" $ "secret" NAME "key" KEY "length" N).
*/}}
{{- define "factory.generatedSecretValue" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key -}}
{{- else -}}
{{- randAlphaNum (int .length) | b64enc -}}
{{- end -}}
{{- end -}}

{{/* Environment of the MLflow server and its db-upgrade init container. The password reaches
     libpq as PGPASSWORD from the Secret, so it is in no URI, manifest or command line (and needs
     no URL-encoding). */}}
{{- define "factory.mlflow.env" -}}
- name: HOME
  value: /tmp
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "factory.postgresql.secretName" . }}
      key: {{ include "factory.postgresql.passwordKey" . }}
- name: MLFLOW_BACKEND_STORE_URI
  value: {{ printf "postgresql+psycopg2://%s@%s:%s/%s" (include "factory.postgresql.username" .) (include "factory.postgresql.host" .) (include "factory.postgresql.port" .) (include "factory.postgresql.database" .) }}{{ if not .Values.postgresql.enabled }}?sslmode={{ .Values.externalDatabase.sslMode }}{{ end }}
- name: MLFLOW_ARTIFACTS_DESTINATION
  value: {{ printf "s3://%s/%s" .Values.s3.bucket .Values.mlflow.artifactsPrefix | quote }}
{{- with include "factory.s3.endpoint" . }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.s3.region | quote }}
{{ include "factory.s3.credentialsEnv" . }}
{{- end -}}
