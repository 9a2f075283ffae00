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
{{- include "kuberank.labelsWith" (dict "ctx" . "extra" dict "value" "") -}}
{{- end -}}

{{/* The chart's labels, commonLabels and one object's own (extra: podLabels, a monitor's
labels; value: their values key), merged: a key in both is written once, the object's value
winning (twice in one mapping is a YAML error to strict tools). */}}
{{- define "kuberank.labelsWith" -}}
{{- $ctx := .ctx -}}
helm.sh/chart: {{ printf "%s-%s" $ctx.Chart.Name $ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/part-of: kuberank
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
{{- with $ctx.Values.commonLabels }}
{{- include "kuberank.ownLabelsUntouched" (dict "labels" . "value" "commonLabels") }}
{{- end }}
{{- with .extra }}
{{- include "kuberank.ownLabelsUntouched" (dict "labels" . "value" $.value) }}
{{- end }}
{{- with merge (deepCopy (.extra | default dict)) ($ctx.Values.commonLabels | default dict) }}
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
{{- if eq (toString .Values.operator.serviceAccount.name) "default" -}}
{{- fail "operator.serviceAccount.name may not be default: its role would be bound to the namespace's default ServiceAccount, which every pod without one of its own runs as" -}}
{{- end -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "kuberank.fullname" .)) .Values.operator.serviceAccount.name -}}
{{- else if .Values.operator.serviceAccount.name -}}
{{- .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- fail "operator.serviceAccount.name is needed with operator.serviceAccount.create=false: its role would otherwise be bound to the namespace's default ServiceAccount, which every pod without one of its own runs as" -}}
{{- end -}}
{{- end -}}

{{- define "kuberank.gateway.serviceAccountName" -}}
{{- if eq (toString .Values.gateway.serviceAccount.name) "default" -}}
{{- fail "gateway.serviceAccount.name may not be default: its role would be bound to the namespace's default ServiceAccount, which every pod without one of its own runs as" -}}
{{- end -}}
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

{{/* Whether the pods get fixed user ids: "false" once podSecurityContext.runAsUser is set to
null (OpenShift's restricted-v2 assigns its own, and refuses others). */}}
{{- define "kuberank.fixedIds" -}}
{{- $context := include "kuberank.podSecurityContext" . | fromYaml -}}
{{- not (kindIs "invalid" $context.runAsUser) -}}
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

{{/* Fails when <component>.extraEnv names a variable the chart sets itself: two entries of one
name are kept as written on install, but an upgrade's patch merges them by name (the chart's
value wins) and one that later drops the override deletes the variable altogether. */}}
{{- define "kuberank.noEnvOverride" -}}
{{- $ours := list -}}
{{- range regexFindAll "(?m)^- name: [A-Za-z0-9_.-]+" .env -1 -}}
{{- $ours = append $ours (trimPrefix "- name: " .) -}}
{{- end -}}
{{- range .extraEnv -}}
{{- if has .name $ours -}}
{{- fail (printf "%s.extraEnv may not set %s: the chart sets it from a value of its own (see values.yaml), which an upgrade would keep or delete whatever extraEnv says" $.values .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The gateway container's environment as the chart sets it (extraEnv comes after it). */}}
{{- define "kuberank.gateway.env" -}}
- name: KUBERANK_GATEWAY_PORT
  value: {{ .Values.gateway.containerPort | quote }}
- name: KUBERANK_GATEWAY_NAMESPACES
  value: {{ join "," (include "kuberank.gateway.watchNamespaces" . | fromJsonArray) | quote }}
- name: KUBERANK_GATEWAY_MAX_BODY_BYTES
  value: {{ .Values.gateway.maxBodyBytes | int64 | quote }}
- name: KUBERANK_GATEWAY_MAX_DOCUMENTS
  value: {{ .Values.gateway.maxDocuments | quote }}
- name: KUBERANK_GATEWAY_UPSTREAM_TIMEOUT
  value: {{ .Values.gateway.upstreamTimeoutSeconds | quote }}
- name: KUBERANK_GATEWAY_DRAIN_SECONDS
  value: {{ .Values.gateway.drainSeconds | quote }}
- name: KUBERANK_GATEWAY_KEEP_ALIVE_SECONDS
  value: {{ .Values.gateway.keepAliveSeconds | quote }}
- name: KUBERANK_GATEWAY_READ_TIMEOUT
  value: {{ .Values.gateway.readTimeoutSeconds | quote }}
- name: KUBERANK_GATEWAY_LOG_LEVEL
  value: {{ .Values.gateway.logLevel | quote }}
- name: KUBERANK_GATEWAY_ACCESS_LOG
  value: {{ .Values.gateway.accessLog | quote }}
- name: KUBERANK_GATEWAY_KEY_USE_SECONDS
  value: {{ .Values.gateway.keyUseSeconds | quote }}
{{- if .Values.gateway.ingress.enabled }}
- name: KUBERANK_GATEWAY_PATH_PREFIX  # the Ingress forwards its path prefix unstripped
  value: {{ trimSuffix "/" .Values.gateway.ingress.path | quote }}
{{- end }}
- name: KUBERANK_GATEWAY_PEERS  # each replica enforces 1/N of a key's rate limits
  value: {{ printf "%s/%s-gateway" .Release.Namespace (include "kuberank.fullname" .) | quote }}
- name: KUBERANK_GATEWAY_INSTANCE  # its key in the load reported for autoscaled models
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end -}}

{{/* The operator container's environment as the chart sets it (extraEnv comes after it). */}}
{{- define "kuberank.operator.env" -}}
- name: KUBERANK_RUNTIME_IMAGE
  value: {{ include "kuberank.runtimeImage" . | quote }}
- name: KUBERANK_RUNTIME_CPU_IMAGE
  value: {{ .Values.operator.runtimeCpuImage | quote }}
- name: KUBERANK_RUNTIME_FIXED_IDS  # ids left out of podSecurityContext: left out of models' too
  value: {{ include "kuberank.fixedIds" . | quote }}
- name: KUBERANK_RUNTIME_IMAGE_PULL_SECRETS
  value: {{ .Values.operator.runtimeImagePullSecrets | toJson | quote }}
- name: KUBERANK_NAMESPACES
  value: {{ .Values.operator.watchNamespaces | toJson | quote }}
- name: KUBERANK_STARTUP_TIMEOUT_S
  value: {{ .Values.operator.startupTimeoutSeconds | quote }}
- name: KUBERANK_JSON_LOGS
  value: {{ .Values.operator.jsonLogs | quote }}
- name: KUBERANK_VERBOSE
  value: {{ .Values.operator.verbose | quote }}
- name: KUBERANK_METRICS_FROM
  value: {{ .Values.metrics.scrapeFrom | toJson | quote }}
- name: KUBERANK_METRICS_PORT
  value: {{ .Values.operator.metricsPort | quote }}
- name: KUBERANK_GATEWAY_NAMESPACE  # runtime NetworkPolicies admit this release's gateway only
  value: {{ .Release.Namespace | quote }}
- name: KUBERANK_LIVENESS_ENDPOINT
  value: {{ printf "http://0.0.0.0:%v/healthz" .Values.operator.healthPort | quote }}
{{- with .Values.operator.leaderElection }}
{{- if .enabled }}
- name: KUBERANK_LEADER_ELECT
  value: "true"
- name: KUBERANK_LEASE_NAMESPACE
  value: {{ $.Release.Namespace | quote }}
- name: KUBERANK_LEASE_NAME
  value: {{ printf "%s-operator" (include "kuberank.fullname" $) | quote }}
- name: KUBERANK_LEASE_SECONDS
  value: {{ .leaseSeconds | quote }}
- name: KUBERANK_IDENTITY
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- end }}
{{- end -}}
