{{/* Names, labels and derived values shared by the templates. */}}

{{/* The chart name (nameOverride wins). */}}
{{- define "vrouter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every resource name: <release>-<chart>, or the release alone when it already
contains the chart name. */}}
{{- define "vrouter.fullname" -}}
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

{{/* A resource name with a suffix, kept within 63 characters. */}}
{{- define "vrouter.suffixed" -}}
{{- $base := include "vrouter.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $base .suffix }}
{{- end }}

{{- define "vrouter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pods (never change them: Deployment selectors are immutable). */}}
{{- define "vrouter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vrouter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "vrouter.labels" -}}
helm.sh/chart: {{ include "vrouter.chart" . }}
{{ include "vrouter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vrouter
{{- end }}

{{- define "vrouter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vrouter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vrouter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Service names. */}}
{{- define "vrouter.agentServiceName" -}}
{{- include "vrouter.suffixed" (dict "root" . "suffix" "agent") }}
{{- end }}
{{- define "vrouter.metricsServiceName" -}}
{{- include "vrouter.suffixed" (dict "root" . "suffix" "metrics") }}
{{- end }}
{{- define "vrouter.webhookServiceName" -}}
{{- include "vrouter.suffixed" (dict "root" . "suffix" "webhook") }}
{{- end }}

{{/* Cluster-scoped object names carry the release namespace: two releases in two namespaces
must not share them. */}}
{{- define "vrouter.clusterName" -}}
{{- printf "%s-%s-%s" .root.Release.Namespace (include "vrouter.fullname" .root) .suffix | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "vrouter.webhookConfigName" -}}
{{- printf "%s-%s" .Release.Namespace (include "vrouter.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vrouter.leaseName" -}}
{{- default (include "vrouter.suffixed" (dict "root" . "suffix" "leader")) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "vrouter.pkiSecretName" -}}
{{- default (include "vrouter.suffixed" (dict "root" . "suffix" "pki")) .Values.pki.secretName }}
{{- end }}

{{/* DNS SANs of the agent endpoint's certificate: the Service's in-cluster names, then the
external hostnames. */}}
{{- define "vrouter.serverDnsNames" -}}
{{- $svc := include "vrouter.agentServiceName" . }}
{{- $names := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.%s" $svc .Release.Namespace .Values.clusterDomain) }}
{{- range .Values.agentEndpoint.externalHostnames }}
{{- $names = append $names . }}
{{- end }}
{{- $names | uniq | toJson }}
{{- end }}

{{/* IP SANs: the configured external IPs and a requested load balancer IP. */}}
{{- define "vrouter.serverIPs" -}}
{{- $ips := list }}
{{- range .Values.agentEndpoint.externalIPs }}
{{- $ips = append $ips . }}
{{- end }}
{{- if and (eq .Values.agentEndpoint.service.type "LoadBalancer") .Values.agentEndpoint.service.loadBalancerIP }}
{{- $ips = append $ips .Values.agentEndpoint.service.loadBalancerIP }}
{{- end }}
{{- $ips | uniq | toJson }}
{{- end }}
