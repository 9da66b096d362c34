{{/* Common labels of every resource of this chart. */}}
{{- define "pds.labels" -}}
app.kubernetes.io/name: pds-workspace
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* image reference from {name, tag} */}}
{{- define "pds.image" -}}
{{- printf "%s:%s" .name .tag -}}
{{- end }}

{{/* Kubernetes-safe home claim name, same rule as pds_kernel.sandbox.spec.home_volume_name */}}
{{- define "pds.homeClaim" -}}
{{- printf "home-%s-%s" .project (.user | replace "." "-" | replace "_" "-") -}}
{{- end }}

{{/* Restricted pod and container security contexts of our own pods. */}}
{{- define "pds.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.workspace.uid }}
runAsGroup: {{ .Values.workspace.gid }}
fsGroup: {{ .Values.workspace.gid }}
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "pds.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{/* Claim annotations: keep data on `helm uninstall` unless storage.keep is false. */}}
{{- define "pds.keep" -}}
{{- if .Values.storage.keep }}
annotations:
  helm.sh/resource-policy: keep
{{- end }}
{{- end }}

{{/* Environment shared by our pods that use the database and the data paths. */}}
{{- define "pds.env" -}}
- name: PDS_DATABASE__URL
  valueFrom: {secretKeyRef: {name: {{ .Values.database.existingSecret }}, key: {{ .Values.database.urlKey }}}}
- name: PDS_PATHS__RAW
  value: /srv/pds/raw
- name: PDS_PATHS__LAKE
  value: /srv/pds/lake
- name: PDS_PATHS__PROJECTS
  value: /srv/pds/projects
- name: PDS_PATHS__KEYS
  value: /srv/pds/keys
- name: PDS_PATHS__STAGING
  value: /srv/pds/staging
- name: PDS_PATHS__OUTBOX
  value: /srv/pds/outbox
- name: PDS_PATHS__STATE
  value: /tmp/pds-state
- name: PDS_PATHS__REPORTS
  value: /tmp/pds-reports
- name: HOME
  value: /tmp
{{- end }}
