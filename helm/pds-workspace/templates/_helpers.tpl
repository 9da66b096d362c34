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

{{/* Home claim of (project, user): a readable prefix and 12 hex digits of SHA-256("project/user"),
     so that no two pairs share a claim (jean.dupont / jean_dupont / jean-dupont; abc + def-x /
     abc-def + x). Same rule as pds_kernel.sandbox.spec.home_volume_name (tests/k8s check both). */}}
{{- define "pds.homeClaim" -}}
{{- $digest := printf "%s/%s" .project .user | sha256sum | trunc 12 -}}
{{- printf "home-%s-%s-%s" .project (.user | replace "." "-" | replace "_" "-") $digest -}}
{{- end }}

{{/* Restricted pod and container security contexts of our own pods. */}}
{{- define "pds.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.workspace.uid }}
runAsGroup: {{ .Values.workspace.gid }}
fsGroup: {{ .Values.workspace.gid }}
fsGroupChangePolicy: OnRootMismatch
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

{{/* Environment shared by our pods that use the database and the data paths. The key store sits
     in a directory below its claim's mount: the store makes its directory 0700, which only the
     directory's owner may do, and a claim's root belongs to root (fsGroup only adds the group). */}}
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
  value: /srv/pds/key-store/keys
- name: PDS_PATHS__STAGING
  value: /srv/pds/staging
- name: PDS_PATHS__OUTBOX
  value: /srv/pds/outbox
- name: PDS_PATHS__IMPORTS
  value: /srv/pds/imports
- name: PDS_PATHS__STATE
  value: /tmp/pds-state
- name: PDS_PATHS__REPORTS
  value: /tmp/pds-reports
- name: HOME
  value: /tmp
- name: PDS_AUDIT__KEY_FILE
  value: /etc/pds-audit/key
- name: PDS_AUDIT__ANCHOR_FILE
  value: /srv/pds/audit-anchor/anchors.jsonl
- name: PDS_AUDIT__CREATE_KEY
  value: "false"
- name: PDS_PROJECT_END__RETENTION_DAYS
  value: {{ .Values.projectEnd.retentionDays | default 90 | quote }}
- name: PDS_REGISTRY__MEMBERSHIP_APPROVALS
  value: {{ .Values.registry.membershipApprovals | default 2 | quote }}
{{- end }}

{{/* The audit chain's key (Secret, read-only) and anchor file (claim pds-audit-anchor): mounted
     into every pod that writes the audit trail, at the paths pds.env names. */}}
{{- define "pds.auditVolumeMounts" -}}
- {name: audit-key, mountPath: /etc/pds-audit, readOnly: true}
- {name: audit-anchor, mountPath: /srv/pds/audit-anchor}
{{- end }}
{{- define "pds.auditVolumes" -}}
- name: audit-key
  secret:
    secretName: {{ .Values.audit.keySecret }}
    items: [{key: {{ .Values.audit.keySecretKey }}, path: key}]
    defaultMode: 0440
- {name: audit-anchor, persistentVolumeClaim: {claimName: pds-audit-anchor}}
{{- end }}

{{/* The egress rule to PostgreSQL: databasePeers on databasePort only. No peers = no rule (an
     empty `to` would mean every address, the internet and the metadata endpoint included). */}}
{{- define "pds.databaseEgress" -}}
{{- with .Values.networkPolicy.databasePeers -}}
- to:
    {{- toYaml . | nindent 4 }}
  ports: [{port: {{ $.Values.networkPolicy.databasePort }}, protocol: TCP}]
{{- end -}}
{{- end }}

{{/* Refuse a database peer whose IPv4 block overlaps 169.254.0.0/16 (link-local: the cloud
     metadata endpoint 169.254.169.254 lives there); 0.0.0.0/0 overlaps it too. The block's first
     16 bits are compared with 169.254 on min(prefix, 16) bits. */}}
{{- define "pds.checkDatabasePeers" -}}
{{- range $i, $peer := .Values.networkPolicy.databasePeers }}
{{- with $peer.ipBlock }}
{{- $parts := splitList "/" .cidr }}
{{- $octets := splitList "." (first $parts) }}
{{- $high := add (mul (atoi (index $octets 0)) 256) (atoi (index $octets 1)) }}
{{- $bits := min (atoi (last $parts)) 16 }}
{{- $unit := index (list 65536 32768 16384 8192 4096 2048 1024 512 256 128 64 32 16 8 4 2 1) $bits }}
{{- if eq (div $high $unit) (div 43518 $unit) }}
{{- fail (printf "networkPolicy.databasePeers[%d]: %s overlaps 169.254.0.0/16 (link-local, where the cloud metadata endpoint is): give your PostgreSQL's own address, e.g. 10.20.0.5/32" $i .cidr) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- /* A container's resources (list: the resources, where they come from in the values): refused at
       render without an ephemeral-storage limit, what the pod may write on its node's disk (its
       emptyDirs and its log; docs/deploy-kubernetes.md, "Disk"). */ -}}
{{- define "pds.resources" -}}
{{- $resources := index . 0 }}
{{- if not (index ($resources.limits | default dict) "ephemeral-storage") }}
{{- fail (printf "%s.limits.ephemeral-storage is required: what the pod may write on its node's disk (its emptyDirs' sizes and room for its log)" (index . 1)) }}
{{- end }}
{{- toYaml $resources }}
{{- end }}

{{- /* The hub's public address, JupyterHub's subdomain_host (pds_kernel.hub.origins): the hub at
       https://<name>, each workspace at w--<keyed digest>.<name> (ADR 17), the gate at airlock--service.<name>.
       Without it one origin would serve the hub, the gate and every JupyterLab, and script in one
       could drive the others; so it is required, an https DNS name with nothing after it (the hub
       refuses the same at start: pds_kernel.hub.kubernetes.public_host). */ -}}
{{- define "pds.hubHost" -}}
{{- $setting := "jupyterhub.hub.config.JupyterHub.subdomain_host" }}
{{- $guidance := "the https address browsers use for the hub, e.g. https://pds.example.org, with a wildcard DNS entry (*.pds.example.org) and a TLS certificate for both names at your ingress: each workspace and the gate get their own host below it (docs/deploy-kubernetes.md, \"Host names\")" }}
{{- $host := dig "hub" "config" "JupyterHub" "subdomain_host" "" (.Values.jupyterhub | default dict) | toString }}
{{- if not $host }}
{{- fail (printf "%s is required: set it to %s" $setting $guidance) }}
{{- end }}
{{- if not (hasPrefix "https://" $host) }}
{{- fail (printf "%s is %q: it must start with https:// (browsers reach the hub over TLS); set it to %s" $setting $host $guidance) }}
{{- end }}
{{- $rest := trimPrefix "https://" $host }}
{{- if regexMatch "[/?#@]" $rest }}
{{- fail (printf "%s is %q: give https://name[:port] with nothing after the name (no path: the hub is at the root of its host); set it to %s" $setting $host $guidance) }}
{{- end }}
{{- $name := regexReplaceAll ":[0-9]{1,5}$" $rest "" }}
{{- if or (regexMatch "^[0-9.]+$" $name) (hasPrefix "[" $name) }}
{{- fail (printf "%s is %q: an IP address has no host names below it; set it to %s" $setting $host $guidance) }}
{{- end }}
{{- if not (regexMatch "^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?[.])+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$" $name) }}
{{- fail (printf "%s is %q: the name must be a DNS name in lower case with at least two labels; set it to %s" $setting $host $guidance) }}
{{- end }}
{{- range $section := list "GenericOAuthenticator" "PdsOAuthenticator" "OAuthenticator" }}
{{- $callback := dig "hub" "config" $section "oauth_callback_url" "" ($.Values.jupyterhub | default dict) | toString }}
{{- if and $callback (ne $callback (printf "%s/hub/oauth_callback" $host)) }}
{{- fail (printf "jupyterhub.hub.config.%s.oauth_callback_url is %q: sign-in comes back to the hub's own host, %s/hub/oauth_callback (register that redirect URI at your identity provider)" $section $callback $host) }}
{{- end }}
{{- end }}
{{- $host }}
{{- end }}

{{- /* The gate's host, as JupyterHub's idna subdomain hook names the service "airlock" (checked
       against pds_kernel.hub.origins.service_url by tests/k8s/test_chart_hub_host.py). */ -}}
{{- define "pds.airlockHost" -}}
{{- printf "https://airlock--service.%s" (trimPrefix "https://" (include "pds.hubHost" .)) }}
{{- end }}

{{- /* Values of the upstream charts that would reopen what the per-project NetworkPolicies and the
       hub's pod hook close, refused at render (red team 20E, docs/deploy-kubernetes.md): policies
       add up, so one z2jh singleuser rule opening egress or ingress opens it for every workspace
       whatever our policies say; a Secret handed by extraEnv is readable by the researcher's code;
       and without our policies the Dask pods of every project have no NetworkPolicy at all. */ -}}
{{- define "pds.checkUserPodValues" -}}
{{- if not .Values.networkPolicy.enabled }}
{{- fail "networkPolicy.enabled is false: the Dask schedulers and workers of every project would have no NetworkPolicy (the internet, the cloud metadata endpoint, other projects' pods); the chart refuses it, keep it true" }}
{{- end }}
{{- if and .Values.workspace.dns (ne .Values.networkPolicy.dns.nameFilter "cilium") }}
{{- fail "workspace.dns is true without networkPolicy.dns.nameFilter: cilium: a workspace would resolve every name through the cluster DNS, a tunnel for data; set nameFilter cilium (only the Services a workspace reaches resolve) or keep workspace.dns false" }}
{{- end }}
{{- $single := (.Values.jupyterhub | default dict).singleuser | default dict }}
{{- $np := $single.networkPolicy | default dict }}
{{- range $rule, $on := $np.egressAllowRules | default dict }}
{{- if $on }}
{{- fail (printf "jupyterhub.singleuser.networkPolicy.egressAllowRules.%s is true: it would open that egress to every workspace (NetworkPolicies add up); keep every egressAllowRules false (workspaces reach the hub, the gate, the package index and their Dask scheduler through the chart's own policies)" $rule) }}
{{- end }}
{{- end }}
{{- if $np.egress }}
{{- fail "jupyterhub.singleuser.networkPolicy.egress is not empty: it would open that egress to every workspace (NetworkPolicies add up); keep it [] (docs/deploy-kubernetes.md, NetworkPolicies)" }}
{{- end }}
{{- if or $np.ingress $np.allowedIngressPorts }}
{{- fail "jupyterhub.singleuser.networkPolicy.ingress / allowedIngressPorts is not empty: it would let other pods into every workspace; keep both [] (the hub and its proxy reach workspaces through the chart's own policies)" }}
{{- end }}
{{- if $single.serviceAccountName }}
{{- fail "jupyterhub.singleuser.serviceAccountName is set: workspaces run as the namespace's default ServiceAccount with no token; keep it null" }}
{{- end }}
{{- $env := $single.extraEnv | default dict }}
{{- if kindIs "map" $env }}
{{- range $name, $value := $env }}
{{- if and (kindIs "map" $value) (hasKey $value "valueFrom") }}
{{- fail (printf "jupyterhub.singleuser.extraEnv.%s takes its value from the cluster (valueFrom): the researcher's code would read it; give workspaces literal values only" $name) }}
{{- end }}
{{- end }}
{{- else }}
{{- range $item := $env }}
{{- if and (kindIs "map" $item) (hasKey $item "valueFrom") }}
{{- fail (printf "jupyterhub.singleuser.extraEnv %v takes its value from the cluster (valueFrom): the researcher's code would read it; give workspaces literal values only" $item.name) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- /* The dask-gateway chart writes these values into its pod manifests as they are, unquoted: a
       newline in one is YAML of the operator's choosing in the pod (a securityContext, host
       namespaces). Each must be one plain word. The pds-harden post-renderer checks the pods
       again (ADR 18). */ -}}
{{- define "pds.checkGatewayScalars" -}}
{{- $dg := index .Values "dask-gateway" | default dict -}}
{{- range $part := list "gateway" "controller" "traefik" -}}
{{- $values := get $dg $part | default dict -}}
{{- $image := get $values "image" | default dict -}}
{{- $rbac := get (get $dg "rbac" | default dict) $part | default dict -}}
{{- $auth := dig "auth" "jupyterhub" dict $values -}}
{{- $scalars := dict (printf "%s.image.name" $part) (get $image "name") (printf "%s.image.tag" $part) (get $image "tag") (printf "rbac.%s.serviceAccountName" $part) (get $rbac "serviceAccountName") (printf "%s.auth.jupyterhub.apiTokenFromSecretName" $part) (get $auth "apiTokenFromSecretName") (printf "%s.auth.jupyterhub.apiTokenFromSecretKey" $part) (get $auth "apiTokenFromSecretKey") -}}
{{- range $name, $value := $scalars -}}
{{- if and $value (not (regexMatch "^[A-Za-z0-9][A-Za-z0-9._/:@-]*$" (toString $value))) -}}
{{- fail (printf "dask-gateway.%s is %q: the dask-gateway chart writes it into its pod manifest unquoted, so it must be one word of letters, digits and ._/:@- (no space, newline or quote)" $name (toString $value)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
