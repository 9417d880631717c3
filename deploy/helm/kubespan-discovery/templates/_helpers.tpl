{{/* Names and labels shared by every template. */}}
{{- define "discovery.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "discovery.selector" -}}
app.kubernetes.io/name: discovery-service
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "discovery.labels" -}}
{{ include "discovery.selector" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "discovery.ha" -}}
{{- if eq .Values.mode "ha" }}true{{ else if eq .Values.mode "single" }}{{ else }}{{ fail "mode must be single or ha" }}{{ end -}}
{{- end -}}
