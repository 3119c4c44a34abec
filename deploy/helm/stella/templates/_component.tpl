{{- /*
The objects of one StellaOps component. Every helper here takes (dict "root" $ "name" "<catalog
name>") and renders nothing when the component is disabled; templates/<component>/ holds one
generated file per object kind that includes it. What differs between components comes from the
catalog (templates/_catalog.tpl: port, role, health paths, dependencies, keys) and from the
component's values block (.Values.<valuesKey>).
*/ -}}

{{- /*
stella.component.deployment: the Deployment. Pod Security "restricted", no service account token,
no service links, probes on the catalog's health paths, resources, /tmp as the only writable path,
secrets as files; workers wait for the API (upgrade.workersWaitForApi).
*/ -}}
{{- define "stella.component.deployment" -}}
{{- if include "stella.enabled" . -}}
{{- $root := .root -}}
{{- $f := fromJson (include "stella.facts" .) -}}
{{- $v := index $root.Values $f.valuesKey -}}
{{- $name := include "stella.componentName" (dict "root" $root "component" $f.name) -}}
{{- $image := include "stella.image" (dict "root" $root "image" $v.image "what" $f.valuesKey) -}}
{{- $ctx := dict "root" $root "component" $f.name -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "stella.labels" $ctx | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "stella.selectorLabels" $ctx | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        {{- include "stella.selectorLabels" $ctx | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- if and $root.Values.metrics.enabled $root.Values.metrics.podAnnotations }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $f.port | quote }}
        prometheus.io/path: {{ $f.metrics | quote }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "stella.component.serviceAccountName" . }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- include "stella.podSecurityContext" (dict "uid" 65532) | nindent 6 }}
      {{- with (include "stella.imagePullSecrets" $root) }}{{ . | nindent 6 }}{{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . | quote }}
      {{- end }}
      {{- if and (eq $f.role "worker") $root.Values.upgrade.workersWaitForApi $root.Values.api.enabled }}
      initContainers:
        {{- include "stella.waitForApi" (dict "root" $root "image" $image) | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $f.name }}
          image: {{ $image | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ $f.port }}
              protocol: TCP
          env:
            {{- include "stella.env" . | trim | nindent 12 }}
          startupProbe:
            httpGet: { path: {{ $f.liveness | quote }}, port: http }
            {{- toYaml $v.probes.startup | nindent 12 }}
          livenessProbe:
            httpGet: { path: {{ $f.liveness | quote }}, port: http }
            {{- toYaml $v.probes.liveness | nindent 12 }}
          readinessProbe:
            httpGet: { path: {{ $f.readiness | quote }}, port: http }
            {{- toYaml $v.probes.readiness | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          {{- include "stella.containerSecurityContext" . | nindent 10 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if fromJsonArray (include "stella.secretSources" .) }}
            - name: secrets
              mountPath: /var/run/secrets/stella
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- include "stella.secretVolume" . | nindent 8 }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
{{- end -}}

{{- /*
stella.component.serviceAccountName: the component's ServiceAccount: serviceAccount.name, else
<fullname>-<component>.
*/ -}}
{{- define "stella.component.serviceAccountName" -}}
{{- $f := fromJson (include "stella.facts" .) -}}
{{- $v := index .root.Values $f.valuesKey -}}
{{- $v.serviceAccount.name | default (include "stella.componentName" (dict "root" .root "component" $f.name)) -}}
{{- end -}}

{{- /*
stella.component.serviceaccount: the component's own ServiceAccount, with no token mounted. No Role
is bound to it: no component calls the Kubernetes API.
*/ -}}
{{- define "stella.component.serviceaccount" -}}
{{- if include "stella.enabled" . -}}
{{- $f := fromJson (include "stella.facts" .) -}}
{{- $v := index .root.Values $f.valuesKey -}}
{{- if $v.serviceAccount.create -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "stella.component.serviceAccountName" . }}
  labels:
    {{- include "stella.labels" (dict "root" .root "component" $f.name) | nindent 4 }}
  {{- with $v.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end -}}
{{- end -}}
{{- end -}}

{{- /*
stella.component.service: the ClusterIP Service on the catalog port (named http).
*/ -}}
{{- define "stella.component.service" -}}
{{- if include "stella.enabled" . -}}
{{- $f := fromJson (include "stella.facts" .) -}}
{{- $ctx := dict "root" .root "component" $f.name -}}
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
    - name: http
      port: {{ $f.port }}
      targetPort: http
      protocol: TCP
{{- end -}}
{{- end -}}

{{- /*
stella.component.hpa: HorizontalPodAutoscaler (autoscaling/v2) on CPU, when autoscaling.enabled.
*/ -}}
{{- define "stella.component.hpa" -}}
{{- if include "stella.enabled" . -}}
{{- $f := fromJson (include "stella.facts" .) -}}
{{- $v := index .root.Values $f.valuesKey -}}
{{- $ctx := dict "root" .root "component" $f.name -}}
{{- if $v.autoscaling.enabled -}}
{{- if lt (int $v.autoscaling.maxReplicas) (int $v.autoscaling.minReplicas) -}}
{{- fail (printf "stella: %s.autoscaling.maxReplicas (%v) is below minReplicas (%v)" $f.valuesKey $v.autoscaling.maxReplicas $v.autoscaling.minReplicas) -}}
{{- end -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "stella.componentName" $ctx }}
  labels:
    {{- include "stella.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "stella.componentName" $ctx }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /*
stella.component.pdb: PodDisruptionBudget (policy/v1), when pdb.enabled.
*/ -}}
{{- define "stella.component.pdb" -}}
{{- if include "stella.enabled" . -}}
{{- $f := fromJson (include "stella.facts" .) -}}
{{- $v := index .root.Values $f.valuesKey -}}
{{- $ctx := dict "root" .root "component" $f.name -}}
{{- if $v.pdb.enabled -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "stella.componentName" $ctx }}
  labels:
    {{- include "stella.labels" $ctx | nindent 4 }}
spec:
  minAvailable: {{ $v.pdb.minAvailable }}
  selector:
    matchLabels:
      {{- include "stella.selectorLabels" $ctx | nindent 6 }}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /*
stella.component.servicemonitor: a ServiceMonitor (Prometheus Operator) on the http port, when
metrics.serviceMonitor.enabled.
*/ -}}
{{- define "stella.component.servicemonitor" -}}
{{- if and (include "stella.enabled" .) .root.Values.metrics.enabled .root.Values.metrics.serviceMonitor.enabled -}}
{{- $f := fromJson (include "stella.facts" .) -}}
{{- $ctx := dict "root" .root "component" $f.name -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "stella.componentName" $ctx }}
  labels:
    {{- include "stella.labels" $ctx | nindent 4 }}
    {{- with .root.Values.metrics.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "stella.selectorLabels" $ctx | nindent 6 }}
  endpoints:
    - port: http
      path: {{ $f.metrics | quote }}
      interval: {{ .root.Values.metrics.serviceMonitor.interval }}
{{- end -}}
{{- end -}}

{{- /*
stella.egressTo: one NetworkPolicy egress rule towards a dependency: a catalog service (its pods,
its port), a bundled support service (its pods) or an external one (its egressCidrs and port).
Takes (dict "root" $ "dep" "<catalog dependency name>").
*/ -}}
{{- define "stella.egressTo" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $support := dict "postgres" "postgresql" "redis" "redis" "object-store" "objectStore" "queue" "queue" "otel-collector" "otel" -}}
{{- if hasKey $support .dep -}}
{{- $key := index $support .dep -}}
{{- $dv := index $v $key -}}
{{- if and $v.bundled.enabled (ne .dep "otel-collector") -}}
{{- $sf := fromJson (include "stella.supportFacts" (dict "root" $root "name" $key)) }}
- to:
    - podSelector:
        matchLabels:
          {{- include "stella.selectorLabels" (dict "root" $root "component" .dep) | nindent 10 }}
  ports:
    - protocol: TCP
      port: {{ $sf.port }}
{{- else }}
- to:
    {{- range $dv.egressCidrs }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
  ports:
    - protocol: TCP
      port: {{ $dv.port }}
{{- end -}}
{{- else if include "stella.enabled" (dict "root" $root "name" .dep) -}}
{{- $df := fromJson (include "stella.facts" (dict "root" $root "name" .dep)) }}
- to:
    - podSelector:
        matchLabels:
          {{- include "stella.selectorLabels" (dict "root" $root "component" .dep) | nindent 10 }}
  ports:
    - protocol: TCP
      port: {{ $df.port }}
{{- end -}}
{{- end -}}

{{- /*
stella.dnsEgress: egress to the cluster DNS (UDP and TCP 53) in networkPolicy.dnsNamespaceSelector.
*/ -}}
{{- define "stella.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.dnsNamespaceSelector | nindent 10 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end -}}

{{- /*
stella.component.networkpolicy: what the component may receive (from the components that depend on
it, the workers' wait-for-api check, the watermark hook, the ingress controller, the metrics
scraper) and send (DNS, each dependency on its port, the collector), on top of the default deny.
*/ -}}
{{- define "stella.component.networkpolicy" -}}
{{- if and (include "stella.enabled" .) .root.Values.networkPolicy.enabled -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $f := fromJson (include "stella.facts" .) -}}
{{- $ctx := dict "root" $root "component" $f.name -}}
{{- $clients := list -}}
{{- range (fromJson (include "stella.catalog" $root)).components -}}
{{- if and (has $f.name .dependsOn) (index $v .valuesKey).enabled -}}{{- $clients = append $clients .name -}}{{- end -}}
{{- if and (eq $f.name "api") (eq .role "worker") $v.upgrade.workersWaitForApi (index $v .valuesKey).enabled -}}{{- $clients = append $clients .name -}}{{- end -}}
{{- end -}}
{{- if has $f.name (list "conseiller" "excitator") -}}{{- $clients = append $clients "upgrade-gate" -}}{{- end -}}
{{- $clients = uniq $clients -}}
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
          port: {{ $f.port }}
    {{- end }}
    {{- if and $v.ingress.enabled (has $f.name (list "api" "console")) }}
    - from:
        - namespaceSelector:
            matchLabels:
              {{- toYaml $v.networkPolicy.ingressControllerNamespaceSelector | nindent 14 }}
      ports:
        - protocol: TCP
          port: {{ $f.port }}
    {{- end }}
    {{- if $v.metrics.enabled }}
    - from:
        - namespaceSelector:
            {{- if $v.metrics.scraperNamespaceSelector }}
            matchLabels:
              {{- toYaml $v.metrics.scraperNamespaceSelector | nindent 14 }}
            {{- else }} {}
            {{- end }}
      ports:
        - protocol: TCP
          port: {{ $f.port }}
    {{- end }}
  egress:
    {{- include "stella.dnsEgress" $root | nindent 4 }}
    {{- range $f.dependsOn }}
    {{- include "stella.egressTo" (dict "root" $root "dep" .) | trim | nindent 4 }}
    {{- end }}
    {{- if and (eq $f.role "worker") $v.upgrade.workersWaitForApi $v.api.enabled (not (has "api" $f.dependsOn)) }}
    {{- include "stella.egressTo" (dict "root" $root "dep" "api") | trim | nindent 4 }}
    {{- end }}
    {{- if $v.otel.endpoint }}
    {{- include "stella.egressTo" (dict "root" $root "dep" "otel-collector") | trim | nindent 4 }}
    {{- end }}
{{- end -}}
{{- end -}}
