{{- /*
stella.migrator.podSpec: the pod of the stella-migrator Job and of its break-glass CronJob: the API
image running `main.js migrate` (the API's idempotent, versioned migrations; a re-run applies
nothing), with the API's configuration and secrets. Takes (dict "root" $ "serviceAccount" "<name>").
*/ -}}
{{- define "stella.migrator.podSpec" -}}
{{- $root := .root -}}
{{- $api := dict "root" $root "name" "api" -}}
serviceAccountName: {{ .serviceAccount }}
automountServiceAccountToken: false
enableServiceLinks: false
restartPolicy: Never
{{ include "stella.podSecurityContext" (dict "uid" 65532) }}
{{- with (include "stella.imagePullSecrets" $root) }}
{{ . }}
{{- end }}
containers:
  - name: migrator
    image: {{ include "stella.image" (dict "root" $root "image" $root.Values.api.image "what" "api") | quote }}
    imagePullPolicy: {{ $root.Values.api.image.pullPolicy }}
    args: ["/app/main.js", "migrate"]
    env:
      {{- include "stella.env" $api | trim | nindent 6 }}
    resources:
      {{- toYaml $root.Values.migrations.resources | nindent 6 }}
    {{- include "stella.containerSecurityContext" . | nindent 4 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- if fromJsonArray (include "stella.secretSources" $api) }}
      - name: secrets
        mountPath: /var/run/secrets/stella
        readOnly: true
      {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
  {{- include "stella.secretVolume" $api | nindent 2 }}
{{- end -}}

{{- /*
stella.migrator.hookEvents: when the migrator runs: before install and before every upgrade; in
bundled mode after install (the bundled PostgreSQL is part of the release, so it exists only then)
and before every upgrade.
*/ -}}
{{- define "stella.migrator.hookEvents" -}}
{{- if .Values.bundled.enabled -}}post-install,pre-upgrade{{- else -}}pre-install,pre-upgrade{{- end -}}
{{- end -}}
