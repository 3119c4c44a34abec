{{- /*
Bundled mode (bundled.enabled, lab clusters only): PostgreSQL, Redis, the S3-compatible store and
NATS with JetStream as StatefulSets with a PersistentVolumeClaim each, from the support image lock
(deploy/support-images.lock.json; the `chart` function pins their digests). Each helper takes
(dict "root" $ "name" "<values key>": postgresql, redis, objectStore, queue) and renders nothing
outside bundled mode. Objects are named <fullname>-<catalog name> (postgres, redis, object-store,
queue), the names the services' wiring uses.
*/ -}}

{{- /*
stella.bundled.statefulset: the StatefulSet. Pod Security "restricted" with the support image's own
uid (its recipe in ci/src/support/recipes.ts), read-only root filesystem, the data volume at the
image's volume path, credentials as files or secretKeyRefs from the bundled Secret.
*/ -}}
{{- define "stella.bundled.statefulset" -}}
{{- if .root.Values.bundled.enabled -}}
{{- $root := .root -}}
{{- $s := fromJson (include "stella.supportFacts" .) -}}
{{- $v := index $root.Values.bundled .name -}}
{{- $ctx := dict "root" $root "component" $s.name -}}
{{- $name := include "stella.componentName" $ctx -}}
{{- $secret := include "stella.bundledSecretName" $root -}}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ $name }}
  labels:
    {{- include "stella.labels" $ctx | nindent 4 }}
spec:
  serviceName: {{ $name }}
  replicas: 1
  selector:
    matchLabels:
      {{- include "stella.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "stella.selectorLabels" $ctx | nindent 8 }}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: 60
      {{- include "stella.podSecurityContext" (dict "uid" (int $s.uid)) | nindent 6 }}
      {{- with (include "stella.imagePullSecrets" $root) }}{{ . | nindent 6 }}{{- end }}
      containers:
        - name: {{ $s.name }}
          image: {{ include "stella.image" (dict "root" $root "image" $v.image "what" (printf "bundled.%s" .name)) | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          {{- if eq .name "postgresql" }}
          env:
            - { name: POSTGRES_USER, value: stella }
            - { name: POSTGRES_DB, value: stella }
            - { name: POSTGRES_PASSWORD_FILE, value: /var/run/secrets/stella/postgres-password }
            - { name: PGDATA, value: {{ printf "%s/pgdata" $s.volume | quote }} }
          {{- else if eq .name "redis" }}
          command: ["/usr/bin/redis-server", "/var/run/secrets/stella/redis.conf"]
          {{- else if eq .name "objectStore" }}
          env:
            - name: AWS_ACCESS_KEY_ID
              valueFrom: { secretKeyRef: { name: {{ $secret | quote }}, key: object-store-access-key } }
            - name: AWS_SECRET_ACCESS_KEY
              valueFrom: { secretKeyRef: { name: {{ $secret | quote }}, key: object-store-secret-key } }
          {{- end }}
          ports:
            {{- range $s.ports }}
            - name: {{ .name | quote }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
          {{- if eq .name "postgresql" }}
          readinessProbe:
            exec: { command: ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"] }
            periodSeconds: 5
          livenessProbe:
            exec: { command: ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"] }
            periodSeconds: 10
            failureThreshold: 6
          {{- else if eq .name "queue" }}
          readinessProbe:
            httpGet: { path: /healthz, port: 8222 }
            periodSeconds: 5
          livenessProbe:
            httpGet: { path: /healthz, port: 8222 }
            periodSeconds: 10
            failureThreshold: 6
          {{- else }}
          readinessProbe:
            tcpSocket: { port: {{ $s.port }} }
            periodSeconds: 5
          livenessProbe:
            tcpSocket: { port: {{ $s.port }} }
            periodSeconds: 10
            failureThreshold: 6
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          {{- include "stella.containerSecurityContext" . | nindent 10 }}
          volumeMounts:
            - name: data
              mountPath: {{ $s.volume | quote }}
            - name: tmp
              mountPath: /tmp
            {{- if eq .name "postgresql" }}
            - name: run
              mountPath: /run/postgresql
            {{- end }}
            {{- if has .name (list "postgresql" "redis") }}
            - name: credentials
              mountPath: /var/run/secrets/stella
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir: { sizeLimit: 256Mi }
        {{- if eq .name "postgresql" }}
        - name: run
          emptyDir: { sizeLimit: 1Mi }
        - name: credentials
          secret:
            secretName: {{ $secret | quote }}
            defaultMode: 0440
            items: [{ key: postgres-password, path: postgres-password }]
        {{- else if eq .name "redis" }}
        - name: credentials
          secret:
            secretName: {{ $secret | quote }}
            defaultMode: 0440
            items: [{ key: redis.conf, path: redis.conf }]
        {{- end }}
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        {{- with $v.storage.storageClassName }}
        storageClassName: {{ . | quote }}
        {{- end }}
        resources:
          requests:
            storage: {{ $v.storage.size }}
{{- end -}}
{{- end -}}

{{- /*
stella.bundled.service: the Service of a bundled StatefulSet (the name the services connect to).
*/ -}}
{{- define "stella.bundled.service" -}}
{{- if .root.Values.bundled.enabled -}}
{{- $s := fromJson (include "stella.supportFacts" .) -}}
{{- $ctx := dict "root" .root "component" $s.name -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "stella.componentName" $ctx }}
  labels:
    {{- include "stella.labels" $ctx | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "stella.selectorLabels" $ctx | nindent 4 }}
  ports:
    {{- range $s.ports }}
    - name: {{ .name | quote }}
      port: {{ .port }}
      targetPort: {{ .port }}
      protocol: TCP
    {{- end }}
{{- end -}}
{{- end -}}

{{- /*
stella.bundled.networkpolicy: a bundled service accepts its port from the enabled components that
depend on it (and the migrator, for PostgreSQL; the bucket Job, object-store-init.yaml, for the
object store) and sends nothing.
*/ -}}
{{- define "stella.bundled.networkpolicy" -}}
{{- if and .root.Values.bundled.enabled .root.Values.networkPolicy.enabled -}}
{{- $root := .root -}}
{{- $s := fromJson (include "stella.supportFacts" .) -}}
{{- $ctx := dict "root" $root "component" $s.name -}}
{{- $clients := list -}}
{{- range (fromJson (include "stella.catalog" $root)).components -}}
{{- if and (has $s.name .dependsOn) (index $root.Values .valuesKey).enabled -}}{{- $clients = append $clients .name -}}{{- end -}}
{{- end -}}
{{- if and (eq $s.name "postgres") $root.Values.migrations.enabled -}}{{- $clients = append $clients "migrator" -}}{{- end -}}
{{- if eq $s.name "object-store" -}}{{- $clients = append $clients "object-store-init" -}}{{- end -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "stella.componentName" $ctx }}
  labels:
    {{- include "stella.labels" $ctx | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "stella.selectorLabels" $ctx | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    {{- range $clients }}
    - from:
        - podSelector:
            matchLabels:
              {{- include "stella.selectorLabels" (dict "root" $root "component" .) | nindent 14 }}
      ports:
        - protocol: TCP
          port: {{ $s.port }}
    {{- end }}
  egress: []
{{- end -}}
{{- end -}}

{{- /*
stella.bundled.credentials: the bundled Secret's data as YAML (base64 values): the lab credentials
from bundled.auth, else the ones an earlier install generated (read back with lookup), else new
random ones; and the URLs the services read (database-url, redis-url) built from them.
*/ -}}
{{- define "stella.bundled.credentials" -}}
{{- $name := include "stella.bundledSecretName" . -}}
{{- $old := (lookup "v1" "Secret" .Release.Namespace $name).data | default dict -}}
{{- $a := .Values.bundled.auth -}}
{{- $pick := dict -}}
{{- range $k, $given := dict "postgres-password" $a.postgresPassword "redis-password" $a.redisPassword "object-store-access-key" $a.objectStoreAccessKey "object-store-secret-key" $a.objectStoreSecretKey -}}
{{- $_ := set $pick $k ($given | default (index $old $k | default "" | b64dec) | default (randAlphaNum 32)) -}}
{{- end -}}
{{- $full := include "stella.fullname" . -}}
postgres-password: {{ index $pick "postgres-password" | b64enc | quote }}
redis-password: {{ index $pick "redis-password" | b64enc | quote }}
object-store-access-key: {{ index $pick "object-store-access-key" | b64enc | quote }}
object-store-secret-key: {{ index $pick "object-store-secret-key" | b64enc | quote }}
database-url: {{ printf "postgres://stella:%s@%s-postgres:5432/stella" (index $pick "postgres-password" | urlquery) $full | b64enc | quote }}
redis-url: {{ printf "redis://:%s@%s-redis:6379/0" (index $pick "redis-password" | urlquery) $full | b64enc | quote }}
redis.conf: {{ printf "include /etc/redis/stella.conf\nrequirepass %s\n" (index $pick "redis-password") | b64enc | quote }}
{{- end -}}
