{{/*
Resources are named "coder" (as in Coder's chart), so the in-cluster URL is predictable:
http://coder.<namespace>.svc.cluster.local. One release per namespace.
*/}}
{{- define "coder.name" -}}
coder
{{- end }}

{{- define "coder.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels selecting the pods: the app labels the Service and the default anti-affinity use.
*/}}
{{- define "coder.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coder.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "coder.labels" -}}
helm.sh/chart: {{ include "coder.chart" . }}
{{ include "coder.selectorLabels" . }}
app.kubernetes.io/part-of: coder
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "coder.image" -}}
{{- $tag := .Values.coder.image.tag | default .Chart.AppVersion -}}
{{- if not .Values.coder.image.repo -}}
{{- fail "coder.image.repo must be set" -}}
{{- end -}}
{{ printf "%s:%s" .Values.coder.image.repo $tag }}
{{- end }}

{{/*
"true" when coder.env has a variable of that name. Usage: include "coder.envHas" (list . "NAME")
*/}}
{{- define "coder.envHas" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- range $root.Values.coder.env -}}
{{- if eq .name $name -}}true{{- end -}}
{{- end -}}
{{- end }}

{{/*
"true" when /metrics is served: coder.prometheus.enable, or CODER_PROMETHEUS_ENABLE=true in coder.env
(a literal value; valueFrom is not looked into).
*/}}
{{- define "coder.prometheusEnabled" -}}
{{- $on := .Values.coder.prometheus.enable -}}
{{- range .Values.coder.env -}}
{{- if and (eq .name "CODER_PROMETHEUS_ENABLE") (hasKey . "value") -}}
{{- $on = eq (toString .value) "true" -}}
{{- end -}}
{{- end -}}
{{- if $on -}}true{{- end -}}
{{- end }}

{{/*
"true" when the pods get a database URL from somewhere (the Secret, coder.env or, possibly, envFrom).
*/}}
{{- define "coder.externalDatabase" -}}
{{- if or .Values.coder.database.secretName (include "coder.envHas" (list . "CODER_PG_CONNECTION_URL")) .Values.coder.envFrom -}}true{{- end -}}
{{- end }}

{{- define "coder.defaultAccessURL" -}}
{{ printf "http://%s.%s.svc.cluster.local" (include "coder.name" .) .Release.Namespace }}
{{- end }}

{{- define "coder.serviceAccountName" -}}
{{ .Values.coder.serviceAccount.name | default (include "coder.name" .) }}
{{- end }}

{{/*
The timing fields of a probe's values (those that are set), e.g. coder.readinessProbe.
*/}}
{{- define "coder.probeTimings" -}}
{{- range $key := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "successThreshold" "failureThreshold" }}
{{- if hasKey $ $key }}
{{ $key }}: {{ index $ $key }}
{{- end }}
{{- end }}
{{- end }}
