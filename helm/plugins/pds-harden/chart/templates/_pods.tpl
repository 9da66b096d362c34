{{- /*
The pods of the release, for release.yaml: where each kind of workload keeps its pod spec, the
securityContext the dask-gateway pods get, and the check every pod of the release must pass.
Each template takes a dict with "spec" (the pod spec, changed in place) and "where" (for errors).
*/ -}}

{{- /* The pod spec of a workload document, or "" if the kind has none: the path to it, as a list. */ -}}
{{- define "pds-harden.podPath" -}}
{{- $kind := toString . -}}
{{- if has $kind (list "Deployment" "StatefulSet" "DaemonSet" "ReplicaSet" "ReplicationController" "Job" "PodTemplate") -}}
spec template spec
{{- else if eq $kind "CronJob" -}}
spec jobTemplate spec template spec
{{- else if eq $kind "Pod" -}}
spec
{{- end -}}
{{- end -}}

{{- define "pds-harden.containers" -}}
{{- $spec := . -}}
{{- $all := list -}}
{{- range $field := list "initContainers" "containers" "ephemeralContainers" -}}
{{- range (get $spec $field | default list) -}}
{{- $all = append $all . -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "all" $all) -}}
{{- end -}}

{{- /* A value the hardened securityContext sets may be absent or already hardened, nothing else. */ -}}
{{- define "pds-harden.checkSecurityContext" -}}
{{- $sc := .sc -}}
{{- range $key, $value := $sc -}}
{{- if not (has $key $.allowed) -}}
{{- fail (printf "pds-harden: %s sets securityContext.%s, which a dask-gateway pod must not: refused (remove it from your values)" $.where $key) -}}
{{- end -}}
{{- end -}}
{{- range $key := list "runAsUser" "runAsGroup" -}}
{{- if and (hasKey $sc $key) (lt (int64 (get $sc $key)) 1) -}}
{{- fail (printf "pds-harden: %s sets securityContext.%s to %v (root): refused" $.where $key (get $sc $key)) -}}
{{- end -}}
{{- end -}}
{{- range $key, $want := dict "runAsNonRoot" true "readOnlyRootFilesystem" true "allowPrivilegeEscalation" false "privileged" false -}}
{{- if and (hasKey $sc $key) (ne (toString (get $sc $key)) (toString $want)) -}}
{{- fail (printf "pds-harden: %s sets securityContext.%s to %v: refused (a dask-gateway pod runs with %v)" $.where $key (get $sc $key) $want) -}}
{{- end -}}
{{- end -}}
{{- if and (hasKey $sc "capabilities") (ne (toJson $sc.capabilities) (toJson (dict "drop" (list "ALL")))) -}}
{{- fail (printf "pds-harden: %s sets securityContext.capabilities to %s: refused (a dask-gateway pod drops ALL and adds none)" $.where (toJson $sc.capabilities)) -}}
{{- end -}}
{{- if and (hasKey $sc "seccompProfile") (ne (toJson $sc.seccompProfile) (toJson (dict "type" "RuntimeDefault"))) -}}
{{- fail (printf "pds-harden: %s sets securityContext.seccompProfile to %s: refused (a dask-gateway pod runs with RuntimeDefault)" $.where (toJson $sc.seccompProfile)) -}}
{{- end -}}
{{- end -}}

{{- /* The dask-gateway chart's pods: what their chart has no value for (ADR 18). */ -}}
{{- define "pds-harden.harden" -}}
{{- $spec := .spec -}}
{{- $pod := get $spec "securityContext" | default dict -}}
{{- include "pds-harden.checkSecurityContext" (dict "sc" $pod "where" (printf "the pod of %s" .where) "allowed" (list "runAsUser" "runAsGroup" "runAsNonRoot" "fsGroup" "fsGroupChangePolicy" "supplementalGroups" "seccompProfile")) -}}
{{- $_ := set $spec "securityContext" (merge $pod (dict "runAsNonRoot" true "runAsUser" 1000 "runAsGroup" 1000 "seccompProfile" (dict "type" "RuntimeDefault"))) -}}
{{- range $field := list "initContainers" "containers" "ephemeralContainers" -}}
{{- range $c := (get $spec $field | default list) -}}
{{- $sc := get $c "securityContext" | default dict -}}
{{- $where := printf "container %s of %s" (toString $c.name) $.where -}}
{{- include "pds-harden.checkSecurityContext" (dict "sc" $sc "where" $where "allowed" (list "runAsUser" "runAsGroup" "runAsNonRoot" "allowPrivilegeEscalation" "capabilities" "readOnlyRootFilesystem" "seccompProfile" "privileged")) -}}
{{- $_ := set $c "securityContext" (merge $sc (dict "runAsNonRoot" true "allowPrivilegeEscalation" false "privileged" false "readOnlyRootFilesystem" true "capabilities" (dict "drop" (list "ALL")))) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Every pod of the release, hardened here or by its own chart: the last word before the cluster. */ -}}
{{- define "pds-harden.verify" -}}
{{- $spec := .spec -}}
{{- range $key := list "hostNetwork" "hostPID" "hostIPC" -}}
{{- if eq (toString (get $spec $key)) "true" -}}
{{- fail (printf "pds-harden: the pod of %s sets %s: refused" $.where $key) -}}
{{- end -}}
{{- end -}}
{{- $pod := get $spec "securityContext" | default dict -}}
{{- range $c := (include "pds-harden.containers" $spec | fromJson).all -}}
{{- $own := get $c "securityContext" | default dict -}}
{{- $sc := merge (deepCopy $own) (pick $pod "runAsUser" "runAsNonRoot") -}}
{{- $where := printf "container %s of %s" (toString $c.name) $.where -}}
{{- $caps := get $sc "capabilities" | default dict -}}
{{- if eq (toString (get $sc "privileged")) "true" -}}
{{- fail (printf "pds-harden: %s is privileged: refused" $where) -}}
{{- end -}}
{{- if ne (toString (get $sc "allowPrivilegeEscalation")) "false" -}}
{{- fail (printf "pds-harden: %s does not set allowPrivilegeEscalation: false: refused" $where) -}}
{{- end -}}
{{- if or (get $caps "add") (not (has "ALL" (get $caps "drop" | default list))) -}}
{{- fail (printf "pds-harden: %s does not drop ALL capabilities, or adds some (%s): refused" $where (toJson $caps)) -}}
{{- end -}}
{{- $uid := get $sc "runAsUser" -}}
{{- if or (and (hasKey $sc "runAsUser") (lt (int64 $uid) 1)) (and (not (hasKey $sc "runAsUser")) (ne (toString (get $sc "runAsNonRoot")) "true")) -}}
{{- fail (printf "pds-harden: %s may run as root (runAsUser %v, runAsNonRoot %v): refused" $where $uid (get $sc "runAsNonRoot")) -}}
{{- end -}}
{{- end -}}
{{- end -}}
