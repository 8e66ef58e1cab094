{{/* Chart name, truncated at 63 characters (the DNS label limit of some name fields). */}}
{{- define "pilotmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of resource names: the release name, plus the chart name unless the release name contains it. */}}
{{- define "pilotmesh.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels on every object of the chart. */}}
{{- define "pilotmesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "pilotmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pilotmesh
{{- end }}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "operator"). */}}
{{- define "pilotmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pilotmesh.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* An image reference: call with (dict "ctx" $ "image" .Values.images.operator). Digest wins over tag. */}}
{{- define "pilotmesh.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{- define "pilotmesh.operatorServiceAccount" -}}
{{- default (printf "%s-operator" (include "pilotmesh.fullname" .)) .Values.operator.serviceAccount.name }}
{{- end }}

{{/* Names the operator gives what it creates (operator/src/pilotmesh_operator/desired.py). */}}
{{- define "pilotmesh.injectorName" -}}pilotmesh-injector{{- end }}
{{- define "pilotmesh.tlsSecretName" -}}pilotmesh-injector-tls{{- end }}

{{/* The restricted Pod Security securityContext of every container the chart renders. */}}
{{- define "pilotmesh.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{- define "pilotmesh.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "pilotmesh.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Read access to every policy kind the transport analyzer understands (operator and injector);
     the optional kinds are read where their CRDs exist (operator/src/pilotmesh_operator/k8s.py POLICY_PATHS). */}}
{{- define "pilotmesh.policyReadRules" -}}
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, watch]
- apiGroups: [policy.networking.k8s.io]
  resources: [adminnetworkpolicies, baselineadminnetworkpolicies]
  verbs: [list, watch]
- apiGroups: [crd.projectcalico.org]
  resources: [networkpolicies, globalnetworkpolicies]
  verbs: [list, watch]
- apiGroups: [cilium.io]
  resources: [ciliumnetworkpolicies, ciliumclusterwidenetworkpolicies]
  verbs: [list, watch]
{{- end }}
