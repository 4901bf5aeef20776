{{/* The chart's name, or nameOverride. */}}
{{- define "elasticjob.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects: fullnameOverride, else <release>-<name> (just the release if it contains the name). */}}
{{- define "elasticjob.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "elasticjob.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object: the standard ones, then commonLabels. */}}
{{- define "elasticjob.labels" -}}
app.kubernetes.io/name: {{ include "elasticjob.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels that select the operator pod. */}}
{{- define "elasticjob.selectorLabels" -}}
app.kubernetes.io/name: {{ include "elasticjob.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Name of the operator's ServiceAccount. */}}
{{- define "elasticjob.serviceAccountName" -}}
{{- default (include "elasticjob.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}
