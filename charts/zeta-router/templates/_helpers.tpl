{{/*
The chart name, or nameOverride; cut to 63 characters (a DNS label).
*/}}
{{- define "zeta-router.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
"<release>-<chart>" (or the release name alone when it already holds the chart name),
or fullnameOverride; cut to 63 characters. Cluster-scoped objects take their names from
it, so releases of different names never clash.
*/}}
{{- define "zeta-router.fullname" -}}
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

{{/*
Per-component names: "<fullname>-operator" and "<fullname>-gateway", cut so that the
suffix always survives.
*/}}
{{- define "zeta-router.operator.fullname" -}}
{{- printf "%s-operator" (include "zeta-router.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "zeta-router.gateway.fullname" -}}
{{- printf "%s-gateway" (include "zeta-router.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/*
chart label: name-version.
*/}}
{{- define "zeta-router.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of one component. Call with (dict "ctx" $ "component" "operator").
*/}}
{{- define "zeta-router.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zeta-router.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Common labels of one component. Call with (dict "ctx" $ "component" "operator").
*/}}
{{- define "zeta-router.labels" -}}
helm.sh/chart: {{ include "zeta-router.chart" .ctx }}
{{ include "zeta-router.selectorLabels" . }}
app.kubernetes.io/part-of: zeta-router
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end }}

{{/*
ServiceAccount names.
*/}}
{{- define "zeta-router.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "zeta-router.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "zeta-router.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create }}
{{- default (include "zeta-router.gateway.fullname" .) .Values.gateway.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.gateway.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "zeta-router.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The operator's namespaced rules: the same as in manifests/operator/clusterrole.yaml
(tests/integration/chart/test_chart.py compares them). In a ClusterRole when the operator
watches every namespace; in a Role per namespace otherwise, where the peering rule names
KopfPeerings only (ClusterKopfPeerings are cluster-scoped).
*/}}
{{- define "zeta-router.operator.namespacedRules" -}}
# The routers: kopf watches them (and patches off the finalizer earlier builds put on
# them); the loop writes status.
- apiGroups: [zeta.dev]
  resources: [zetarouters]
  verbs: [list, watch, patch]
- apiGroups: [zeta.dev]
  resources: [zetarouters/status]
  verbs: [patch]
# The table's owner reference sets blockOwnerDeletion, which clusters running the
# OwnerReferencesPermissionEnforcement admission plugin allow only with this.
- apiGroups: [zeta.dev]
  resources: [zetarouters/finalizers]
  verbs: [update]
# The pod index (kopf's watch): no list call per cycle, so no get either.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# The routing tables: read back once (revision, owner), then created or patched.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
# Events about routers (weight shifts, fallbacks, recoveries), posted through kopf.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/*
The operator's cluster-scoped rules: kopf discovers its resources and the namespaces to
serve as they come and go.
*/}}
{{- define "zeta-router.operator.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}

{{/*
topologySpreadConstraints of one component; a constraint without a labelSelector spreads
that component's pods (the usual intent, and what bitnami charts do).
Call with (dict "ctx" $ "component" "gateway" "constraints" .Values.gateway.topologySpreadConstraints).
*/}}
{{- define "zeta-router.topologySpreadConstraints" -}}
{{- $selector := include "zeta-router.selectorLabels" (dict "ctx" .ctx "component" .component) | fromYaml }}
{{- $constraints := list }}
{{- range .constraints }}
{{- $constraints = append $constraints (merge (dict) . (dict "labelSelector" (dict "matchLabels" $selector))) }}
{{- end }}
{{- toYaml $constraints }}
{{- end }}

{{/*
A PodDisruptionBudget's spec body from {minAvailable, maxUnavailable}: minAvailable wins
when set, as the two cannot be given together.
*/}}
{{- define "zeta-router.pdbSpec" -}}
{{- if not (kindIs "invalid" .minAvailable) }}
minAvailable: {{ .minAvailable }}
{{- else }}
maxUnavailable: {{ .maxUnavailable }}
{{- end }}
{{- end }}

{{/*
The gateway's --workers value, or "" to leave the flag out. gateway.workers when set;
else nothing when the container has a CPU limit (zeta-sidecar reads it from its cgroup:
the limit rounded up); else the CPU request rounded up, since without a limit the sidecar
would find every CPU of the node and fork a worker per core, each with its own memory.
*/}}
{{- define "zeta-router.gateway.workers" -}}
{{- $gw := .Values.gateway }}
{{- if $gw.workers }}
{{- $gw.workers }}
{{- else if not (dig "limits" "cpu" "" $gw.resources) }}
{{- $cpu := toString (dig "requests" "cpu" "1" $gw.resources) }}
{{- if hasSuffix "m" $cpu }}
{{- max 1 (div (add (trimSuffix "m" $cpu | atoi) 999) 1000) }}
{{- else }}
{{- max 1 (ceil (float64 $cpu) | int) }}
{{- end }}
{{- end }}
{{- end }}
