{{/* Names, labels and the hardened security contexts shared by both deployables. */}}

{{- define "kuberank.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kuberank.fullname" -}}
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

{{- define "kuberank.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kuberank
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "kuberank.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kuberank.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kuberank.image" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) -}}
{{- end -}}

{{- define "kuberank.runtimeImage" -}}
{{- default (printf "ghcr.io/kuberank/runtime:%s" .Chart.AppVersion) .Values.operator.runtimeImage -}}
{{- end -}}

{{- define "kuberank.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "kuberank.fullname" .)) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kuberank.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create -}}
{{- default (printf "%s-gateway" (include "kuberank.fullname" .)) .Values.gateway.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.gateway.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Pod Security "restricted": non-root, no privilege escalation, no capabilities, seccomp. */}}
{{- define "kuberank.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kuberank.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* checkov checks skipped on pod controllers, each with its reason. */}}
{{- define "kuberank.checkovPodSkips" -}}
checkov.io/skip1: CKV_K8S_43=Images are pinned by release tag (the chart's appVersion); a digest can be given per install in image.tag as <tag>@sha256:<digest>.
checkov.io/skip2: CKV_K8S_15=Release tags are immutable, so IfNotPresent is safe and keeps air-gapped clusters working; pullPolicy is a value.
checkov.io/skip3: CKV_K8S_38=Both the operator and the gateway are Kubernetes API clients (watches) and need their ServiceAccount token.
{{- end -}}

{{/* A soft spread of a component's replicas over nodes: never blocks scheduling, but a node
that fails does not take every replica with it. Args: ctx, component. */}}
{{- define "kuberank.spreadOverNodes" -}}
topologySpreadConstraints:
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "kuberank.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 6 }}
{{- end -}}
