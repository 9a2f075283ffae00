{{/* Names, labels and images shared by both deployables. */}}

{{- define "kuberank.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* At most 54 characters: the names made from it (Service "<fullname>-gateway", Deployment
"<fullname>-operator") must stay within 63. */}}
{{- define "kuberank.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Cluster-scoped objects (ClusterRoles and their bindings) carry the release namespace too:
releases of one name in two namespaces must not claim the same objects. */}}
{{- define "kuberank.clusterName" -}}
{{- printf "%s-%s" (include "kuberank.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "kuberank.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kuberank
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- with .Values.commonLabels }}
{{- include "kuberank.ownLabelsUntouched" (dict "labels" . "value" "commonLabels") }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels given in values must not set the chart's own (selectors and NetworkPolicies match
on them). Args: labels, value (the values key, for the message). */}}
{{- define "kuberank.ownLabelsUntouched" -}}
{{- range $key, $_ := .labels }}
{{- if or (hasPrefix "app.kubernetes.io/" $key) (eq $key "helm.sh/chart") }}
{{- fail (printf "%s may not set %s: the chart sets it, and selectors and NetworkPolicies match on it" $.value $key) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "kuberank.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kuberank.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kuberank.image" -}}
{{- $image := .Values.operator.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "kuberank.runtimeImage" -}}
{{- default (printf "ghcr.io/kuberank/runtime:%s" .Chart.AppVersion) .Values.operator.runtimeImage -}}
{{- end -}}

{{- define "kuberank.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "kuberank.fullname" .)) .Values.operator.serviceAccount.name -}}
{{- else if .Values.operator.serviceAccount.name -}}
{{- .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- fail "operator.serviceAccount.name is needed with operator.serviceAccount.create=false: its role would otherwise be bound to the namespace's default ServiceAccount, which every pod without one of its own runs as" -}}
{{- end -}}
{{- end -}}

{{- define "kuberank.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create -}}
{{- default (printf "%s-gateway" (include "kuberank.fullname" .)) .Values.gateway.serviceAccount.name -}}
{{- else if .Values.gateway.serviceAccount.name -}}
{{- .Values.gateway.serviceAccount.name -}}
{{- else -}}
{{- fail "gateway.serviceAccount.name is needed with gateway.serviceAccount.create=false: its role would otherwise be bound to the namespace's default ServiceAccount, which every pod without one of its own runs as" -}}
{{- end -}}
{{- end -}}

{{/* Pod Security "restricted": podSecurityContext and containerSecurityContext, or these
when a value is missing altogether (an upgrade with --reuse-values keeps the values of a chart
that had none: the pods must not lose their hardening for it). values.yaml holds the same. */}}
{{- define "kuberank.podSecurityContext" -}}
{{- $restricted := dict "runAsNonRoot" true "runAsUser" 65532 "runAsGroup" 65532 "fsGroup" 65532 "seccompProfile" (dict "type" "RuntimeDefault") -}}
{{- toYaml (.Values.podSecurityContext | default $restricted) -}}
{{- end -}}

{{- define "kuberank.containerSecurityContext" -}}
{{- $restricted := dict "allowPrivilegeEscalation" false "readOnlyRootFilesystem" true "runAsNonRoot" true "runAsUser" 65532 "capabilities" (dict "drop" (list "ALL")) "seccompProfile" (dict "type" "RuntimeDefault") -}}
{{- toYaml (.Values.containerSecurityContext | default $restricted) -}}
{{- end -}}

{{/* The namespaces the gateway watches, as JSON: its own, or else its operator's. */}}
{{- define "kuberank.gateway.watchNamespaces" -}}
{{- toJson (.Values.gateway.watchNamespaces | default .Values.operator.watchNamespaces) -}}
{{- end -}}

{{/* checkov checks skipped on pod controllers, each with its reason. */}}
{{- define "kuberank.checkovPodSkips" -}}
checkov.io/skip1: CKV_K8S_43=Images are pinned by release tag (the chart's appVersion); a digest can be given per install in operator.image.digest.
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
