{{/* Names and labels, as `helm create` makes them. */}}
{{- define "llm-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llm-proxy.fullname" -}}
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

{{- define "llm-proxy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llm-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "llm-proxy.labels" -}}
helm.sh/chart: {{ include "llm-proxy.chart" . }}
{{ include "llm-proxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "llm-proxy.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "llm-proxy.secretName" -}}
{{- if .Values.secret.create }}
{{- printf "%s-secrets" (include "llm-proxy.fullname" .) }}
{{- else }}
{{- required "secret.existingSecret is required when secret.create is false" .Values.secret.existingSecret }}
{{- end }}
{{- end }}

{{/* The listening port: the config's server.port (18000 when absent). */}}
{{- define "llm-proxy.port" -}}
{{- $server := .Values.config.server | default dict }}
{{- $server.port | default 18000 | int }}
{{- end }}

{{/* preStop sleep + shutdown_grace_secs + margin: SIGKILL only after a full drain. */}}
{{- define "llm-proxy.terminationGracePeriodSeconds" -}}
{{- $grace := .Values.config.shutdown_grace_secs | default 30 | int }}
{{- add .Values.lifecycle.preStopSleepSeconds $grace .Values.lifecycle.terminationMarginSeconds }}
{{- end }}

{{- define "llm-proxy.dbUrlEnv" -}}
- name: DB_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "llm-proxy.secretName" . }}
      key: DB_URL
{{- end }}
