{{- /*
Helpers shared by every template of the chart. Each one takes the root context (.) unless its
comment says it takes a dict.
*/ -}}

{{- /*
stella.name: the chart name, or nameOverride. Truncated to 63 characters (DNS label).
*/ -}}
{{- define "stella.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /*
stella.fullname: the prefix of every object name: fullnameOverride, else the release name when it
already contains the chart name, else <release>-<chart>. Truncated to 40 characters so that
<fullname>-<component>-<suffix> stays a valid name.
*/ -}}
{{- define "stella.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "stella.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "stella.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- /*
stella.chart: <chart>-<version> for the helm.sh/chart label ("+" is not allowed in labels).
*/ -}}
{{- define "stella.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /*
stella.labels: the standard labels of an object. Takes (dict "root" $ "component" "<name>").
*/ -}}
{{- define "stella.labels" -}}
helm.sh/chart: {{ include "stella.chart" .root }}
{{ include "stella.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: stellaops
{{- with .root.Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- /*
stella.selectorLabels: the labels Services, NetworkPolicies, PDBs and HPAs select pods by.
Takes (dict "root" $ "component" "<name>").
*/ -}}
{{- define "stella.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stella.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- /*
stella.instanceSelector: the labels every pod of the release carries (the default-deny policy
selects them all).
*/ -}}
{{- define "stella.instanceSelector" -}}
app.kubernetes.io/name: {{ include "stella.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /*
stella.componentName: <fullname>-<component>, the name of the component's objects.
Takes (dict "root" $ "component" "<name>").
*/ -}}
{{- define "stella.componentName" -}}
{{- printf "%s-%s" (include "stella.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /*
stella.facts: the catalog facts of one component (templates/_catalog.tpl) as JSON.
Takes (dict "root" $ "name" "<catalog name>"); fails on an unknown name.
*/ -}}
{{- define "stella.facts" -}}
{{- $found := "" -}}
{{- range (fromJson (include "stella.catalog" .root)).components -}}
{{- if eq .name $.name -}}{{- $found = toJson . -}}{{- end -}}
{{- end -}}
{{- if not $found -}}{{- fail (printf "stella: no component %q in the catalog" .name) -}}{{- end -}}
{{- $found -}}
{{- end -}}

{{- /*
stella.supportFacts: the catalog facts of one bundled support service, by values key
(postgresql, redis, objectStore, queue). Takes (dict "root" $ "name" "<values key>").
*/ -}}
{{- define "stella.supportFacts" -}}
{{- $found := "" -}}
{{- range (fromJson (include "stella.catalog" .root)).support -}}
{{- if eq .valuesKey $.name -}}{{- $found = toJson . -}}{{- end -}}
{{- end -}}
{{- if not $found -}}{{- fail (printf "stella: no bundled service %q" .name) -}}{{- end -}}
{{- $found -}}
{{- end -}}

{{- /*
stella.enabled: "true" when the component named by its catalog name is enabled (empty otherwise).
Takes (dict "root" $ "name" "<catalog name>").
*/ -}}
{{- define "stella.enabled" -}}
{{- $f := fromJson (include "stella.facts" .) -}}
{{- if (index .root.Values $f.valuesKey).enabled -}}true{{- end -}}
{{- end -}}

{{- /*
stella.image: the image reference. Takes (dict "root" $ "image" <{registry, repository, tag, digest}>
"what" "<name for messages>"). global.imageRegistry replaces the registry (relocation keeps the
digest); a digest overrides the tag (registry/repository@sha256:…); without one the tag, else the
chart appVersion. With global.requireDigests an image without a digest fails the render.
*/ -}}
{{- define "stella.image" -}}
{{- $registry := .root.Values.global.imageRegistry | default .image.registry -}}
{{- $repo := ternary (printf "%s/%s" $registry .image.repository) .image.repository (ne $registry "") -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else if .root.Values.global.requireDigests -}}
{{- fail (printf "stella: %s image %s has no digest, and global.requireDigests is true (install the released chart, whose values pin every image, or set %s.image.digest)" .what $repo .what) -}}
{{- else -}}
{{- printf "%s:%s" $repo (.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- /*
stella.imagePullSecrets: the pod's imagePullSecrets from global.imagePullSecrets (names).
*/ -}}
{{- define "stella.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets -}}
imagePullSecrets:
{{- range . }}
  - name: {{ . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- /*
stella.podSecurityContext: Pod Security "restricted" at pod level: non-root with a fixed uid/gid
(65532 for the StellaOps images; the support images' own uid in bundled mode), fsGroup for
volumes, seccomp RuntimeDefault. Takes (dict "uid" <int>).
*/ -}}
{{- define "stella.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ .uid }}
  runAsGroup: {{ .uid }}
  fsGroup: {{ .uid }}
  fsGroupChangePolicy: OnRootMismatch
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- /*
stella.containerSecurityContext: Pod Security "restricted" at container level: no privilege
escalation, every capability dropped, read-only root filesystem, non-root, seccomp RuntimeDefault.
*/ -}}
{{- define "stella.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  privileged: false
  capabilities:
    drop: ["ALL"]
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- /*
stella.secretFileName: the file a STELLA_* secret key is mounted as: STELLA_DATABASE_URL ->
database-url (the container gets STELLA_DATABASE_URL_FILE=<mount>/database-url).
*/ -}}
{{- define "stella.secretFileName" -}}
{{- trimPrefix "STELLA_" . | lower | replace "_" "-" -}}
{{- end -}}

{{- /*
stella.bundledSecretName: the Secret of the bundled mode's generated (or given) credentials.
*/ -}}
{{- define "stella.bundledSecretName" -}}
{{- printf "%s-bundled-credentials" (include "stella.fullname" .) -}}
{{- end -}}

{{- /*
stella.secretSources: JSON list of the secret files a component gets, each
{key, secret, secretKey, file}: the wired dependency secrets (external existingSecret, or the bundled
Secret) and the component's secretRefs that name a Secret. Takes (dict "root" $ "name" "<catalog name>").
*/ -}}
{{- define "stella.secretSources" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $f := fromJson (include "stella.facts" .) -}}
{{- $bundled := include "stella.bundledSecretName" $root -}}
{{- $out := list -}}
{{- if has "STELLA_DATABASE_URL" $f.wired -}}
{{- $out = append $out (dict "key" "STELLA_DATABASE_URL" "secret" (ternary $bundled $v.postgresql.existingSecret $v.bundled.enabled) "secretKey" (ternary "database-url" $v.postgresql.existingSecretKey $v.bundled.enabled)) -}}
{{- end -}}
{{- if has "STELLA_REDIS_URL" $f.wired -}}
{{- $out = append $out (dict "key" "STELLA_REDIS_URL" "secret" (ternary $bundled $v.redis.existingSecret $v.bundled.enabled) "secretKey" (ternary "redis-url" $v.redis.existingSecretKey $v.bundled.enabled)) -}}
{{- end -}}
{{- if and (has "STELLA_OBJECT_STORE_ACCESS_KEY" $f.wired) (or $v.bundled.enabled $v.objectStore.existingSecret) -}}
{{- $out = append $out (dict "key" "STELLA_OBJECT_STORE_ACCESS_KEY" "secret" (ternary $bundled $v.objectStore.existingSecret $v.bundled.enabled) "secretKey" (ternary "object-store-access-key" $v.objectStore.accessKeyKey $v.bundled.enabled)) -}}
{{- $out = append $out (dict "key" "STELLA_OBJECT_STORE_SECRET_KEY" "secret" (ternary $bundled $v.objectStore.existingSecret $v.bundled.enabled) "secretKey" (ternary "object-store-secret-key" $v.objectStore.secretKeyKey $v.bundled.enabled)) -}}
{{- end -}}
{{- $vals := index $v $f.valuesKey -}}
{{- range $name, $key := $f.secrets -}}
{{- $ref := index $vals.secretRefs $name -}}
{{- if $ref.name -}}
{{- $out = append $out (dict "key" $key "secret" $ref.name "secretKey" $ref.key) -}}
{{- end -}}
{{- end -}}
{{- $files := list -}}
{{- range $out -}}
{{- $files = append $files (merge (dict "file" (include "stella.secretFileName" .key)) .) -}}
{{- end -}}
{{- toJson $files -}}
{{- end -}}

{{- /*
stella.env: the environment of a component's container: exactly keys the catalog gives that service
(templates/_catalog.tpl): the global keys it reads, its own config values, the wired keys (dependency
endpoints, the API URL, STELLA_MIGRATIONS_AUTO=false under the migrator hook), and each secret as
<KEY>_FILE. Empty values are left out (the service then uses the catalog default).
Takes (dict "root" $ "name" "<catalog name>").
*/ -}}
{{- define "stella.env" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $f := fromJson (include "stella.facts" .) -}}
{{- $vals := index $v $f.valuesKey -}}
{{- $globals := fromJson (include "stella.globalValues" $root) -}}
{{- $env := dict -}}
{{- range $path, $key := $f.globals -}}
{{- $_ := set $env $key (index $globals $key) -}}
{{- end -}}
{{- range $name, $key := $f.config -}}
{{- $_ := set $env $key (index $vals.config $name) -}}
{{- end -}}
{{- if has "STELLA_QUEUE_URL" $f.wired -}}
{{- $_ := set $env "STELLA_QUEUE_URL" (ternary (printf "nats://%s-queue:4222" (include "stella.fullname" $root)) $v.queue.url $v.bundled.enabled) -}}
{{- end -}}
{{- if has "STELLA_OBJECT_STORE_ENDPOINT" $f.wired -}}
{{- $_ := set $env "STELLA_OBJECT_STORE_ENDPOINT" (ternary (printf "http://%s-object-store:9000" (include "stella.fullname" $root)) $v.objectStore.endpoint $v.bundled.enabled) -}}
{{- end -}}
{{- if has "STELLA_OTEL_EXPORTER_ENDPOINT" $f.wired -}}
{{- $_ := set $env "STELLA_OTEL_EXPORTER_ENDPOINT" $v.otel.endpoint -}}
{{- end -}}
{{- if has "STELLA_API_URL" $f.wired -}}
{{- $_ := set $env "STELLA_API_URL" (printf "http://%s-api:%d" (include "stella.fullname" $root) (int (fromJson (include "stella.facts" (dict "root" $root "name" "api"))).port)) -}}
{{- end -}}
{{- /* Bundled mode: the migrator is a post-install hook (PostgreSQL is part of the release), which helm --wait runs only once every pod is Ready, so the API migrates at start there. */ -}}
{{- if and (has "STELLA_MIGRATIONS_AUTO" $f.wired) $v.migrations.enabled (not $v.bundled.enabled) -}}
{{- $_ := set $env "STELLA_MIGRATIONS_AUTO" false -}}
{{- end -}}
{{- range (fromJsonArray (include "stella.secretSources" .)) -}}
{{- $_ := set $env (printf "%s_FILE" .key) (printf "/var/run/secrets/stella/%s" .file) -}}
{{- end -}}
{{- range $key := keys $env | sortAlpha -}}
{{- $val := index $env $key -}}
{{- if not (has (trimSuffix "_FILE" $key) $f.keys) -}}
{{- fail (printf "stella: %s would get %s, which is not one of its catalog keys" $f.name $key) -}}
{{- end -}}
{{- if ne (toString $val) "" }}
- name: {{ $key }}
  value: {{ toString $val | quote }}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /*
stella.secretVolume: the projected volume of a component's secret files (nothing when it has none).
Takes (dict "root" $ "name" "<catalog name>").
*/ -}}
{{- define "stella.secretVolume" -}}
{{- $sources := fromJsonArray (include "stella.secretSources" .) -}}
{{- if $sources }}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
{{- range $sources }}
      - secret:
          name: {{ .secret | quote }}
          items:
            - key: {{ .secretKey | quote }}
              path: {{ .file | quote }}
{{- end }}
{{- end -}}
{{- end -}}

{{- /*
stella.waitForApi: an init container that blocks a worker until the API answers its readiness
probe (the upgrade choreography: migrations, then the API, then the workers). Runs the worker's own
image (node is all it needs). Takes (dict "root" $ "image" "<reference>").
*/ -}}
{{- define "stella.waitForApi" -}}
{{- $api := fromJson (include "stella.facts" (dict "root" .root "name" "api")) -}}
- name: wait-for-api
  image: {{ .image | quote }}
  command: ["/nodejs/bin/node", "-e"]
  args:
    - |
      const url = process.argv[1];
      const tick = async () => {
        try { const r = await fetch(url, { signal: AbortSignal.timeout(3000) }); if (r.ok) { console.log('api ready'); process.exit(0); } console.log('api not ready: HTTP ' + r.status); }
        catch (e) { console.log('api not reachable: ' + e.message); }
        setTimeout(tick, 2000);
      };
      tick();
    - {{ printf "http://%s-api:%d%s" (include "stella.fullname" .root) (int $api.port) $api.readiness | quote }}
  {{- include "stella.containerSecurityContext" . | nindent 2 }}
  resources:
    {{- toYaml .root.Values.upgrade.resources | nindent 4 }}
{{- end -}}

{{- /*
stella.checkSkew: the version skew policy (seed §3.6). Every enabled component's version (its
image.tag, else the chart appVersion) must have appVersion's major version, must not be newer than
appVersion, and may lag it by at most versionSkew.maxMinorSkew minor versions; a version that is not
SemVer (edge, nightly-YYYYMMDD) must equal appVersion. Fails naming the component and both versions.
*/ -}}
{{- define "stella.checkSkew" -}}
{{- if .Values.versionSkew.enforce -}}
{{- $app := .Chart.AppVersion -}}
{{- $max := int64 .Values.versionSkew.maxMinorSkew -}}
{{- $re := "^v?[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9A-Za-z.-]+)?$" -}}
{{- range (fromJson (include "stella.catalog" .)).components -}}
{{- $v := index $.Values .valuesKey -}}
{{- if $v.enabled -}}
{{- $ver := $v.image.tag | default $app -}}
{{- $ok := true -}}
{{- if and (regexMatch $re $app) (regexMatch $re $ver) -}}
{{- $a := semver $app -}}
{{- $c := semver $ver -}}
{{- if or (ne $a.Major $c.Major) (gt $c.Minor $a.Minor) (gt (sub $a.Minor $c.Minor) $max) -}}{{- $ok = false -}}{{- end -}}
{{- else if ne $ver $app -}}
{{- $ok = false -}}
{{- end -}}
{{- if not $ok -}}
{{- fail (printf "stella: version skew: %s runs version %s, outside the supported skew of this chart (appVersion %s): a component must have the same major version, must not be newer than the chart, and may be at most %d minor version(s) older; a non-SemVer version must equal appVersion. Install the chart of that release, or set %s.image.tag/digest to a supported release (docs/install/helm-prod.md, \"Version skew\")" .name $ver $app $max .valuesKey) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
