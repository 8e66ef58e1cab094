{{/*
Checks the schema cannot phrase clearly, each failing with what to change. Included by the operator
Deployment, which every install renders.
*/}}
{{- define "pilotmesh.validate" -}}
{{- range $key, $image := .Values.images }}
{{- if regexMatch ":[^/]+$" $image.repository }}
{{- fail (printf "images.%s.repository %q carries a tag: give the repository alone and put the tag in images.%s.tag" $key $image.repository $key) }}
{{- end }}
{{- if eq $image.tag "latest" }}
{{- fail (printf "images.%s.tag is \"latest\": pin a version (pods are marked outdated by comparing image names, and a moving tag hides upgrades); leave it empty for the chart's appVersion" $key) }}
{{- end }}
{{- end }}
{{- if and .Values.mesh.create .Values.injector.deploy (eq .Values.webhook.failurePolicy "Fail") (eq (int .Values.injector.replicas) 0) }}
{{- fail "injector.replicas is 0 while the chart's PilotMesh has webhook.failurePolicy=Fail: no opted-in pod could be created. Set injector.replicas to 1 or more (2 for a PodDisruptionBudget), or webhook.failurePolicy=Ignore" }}
{{- end }}
{{- end }}
