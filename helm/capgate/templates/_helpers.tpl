{{/*
capgate chart helpers. The container, its volumes and the configuration are named
templates so that the standalone Deployment and the sidecar templates share them.

Public templates for an agent chart that depends on this chart (mode: sidecar):
  capgate.sidecar.containers        the capgate container (nothing when sidecar.native)
  capgate.sidecar.initContainers    the capgate native sidecar (only when sidecar.native)
  capgate.sidecar.volumes           its volumes (config, outbox, secrets, bundle, socket)
  capgate.sidecar.socketVolumeMount the agent container's mount of the Unix socket dir
  capgate.sidecar.terminationGracePeriodSeconds
  capgate.sidecar.checksumAnnotation
Each takes the parent chart's context (.) and runs on .Subcharts.capgate
(capgate.onSubchart), so names and values are those the capgate subchart renders its
ConfigMap with.
*/}}

{{/* ---------- names and labels ---------- */}}

{{- define "capgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "capgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "capgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "capgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "capgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "capgate.labels" -}}
helm.sh/chart: {{ include "capgate.chart" . }}
{{ include "capgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: policy-decision-point
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "capgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "capgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "capgate.configMapName" -}}
{{- include "capgate.fullname" . -}}
{{- end -}}

{{- define "capgate.bundleConfigMapName" -}}
{{- default (printf "%s-bundle" (include "capgate.fullname" .)) .Values.policy.bundle.configMap.name -}}
{{- end -}}

{{- define "capgate.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* ---------- derived settings ---------- */}}

{{- define "capgate.sidecarMode" -}}
{{- if eq .Values.mode "sidecar" -}}true{{- end -}}
{{- end -}}

{{- define "capgate.socketDir" -}}/var/run/capgate{{- end -}}
{{- define "capgate.socketPath" -}}{{ include "capgate.socketDir" . }}/capgate.sock{{- end -}}

{{- define "capgate.listen" -}}
{{- if include "capgate.sidecarMode" . -}}
{{- if .Values.server.unixSocket -}}
unix:{{ include "capgate.socketPath" . }}
{{- else -}}
127.0.0.1:{{ .Values.server.port }}
{{- end -}}
{{- else -}}
0.0.0.0:{{ .Values.server.port }}
{{- end -}}
{{- end -}}

{{- define "capgate.metricsListen" -}}
{{- if or (not (include "capgate.sidecarMode" .)) .Values.server.metricsOnPodIP -}}
0.0.0.0:{{ .Values.server.metricsPort }}
{{- else -}}
127.0.0.1:{{ .Values.server.metricsPort }}
{{- end -}}
{{- end -}}

{{- define "capgate.identityMode" -}}
{{- if .Values.identity.mode -}}
{{- .Values.identity.mode -}}
{{- else if include "capgate.sidecarMode" . -}}
insecure
{{- else -}}
jwt
{{- end -}}
{{- end -}}

{{/* The Redis URL without credentials (they come from the environment). */}}
{{- define "capgate.redisUrl" -}}
{{- $r := .Values.redis -}}
{{- if $r.url -}}
{{- $r.url -}}
{{- else -}}
{{- $s := ternary "s" "" $r.tls -}}
{{- if eq $r.mode "sentinel" -}}
{{- if not $r.sentinel.hosts }}{{ fail "redis.mode sentinel needs redis.sentinel.hosts" }}{{ end -}}
redis{{ $s }}+sentinel://{{ join "," $r.sentinel.hosts }}/{{ $r.sentinel.serviceName }}/{{ $r.sentinel.db }}
{{- else if eq $r.mode "cluster" -}}
{{- if not $r.cluster.nodes }}{{ fail "redis.mode cluster needs redis.cluster.nodes" }}{{ end -}}
redis{{ $s }}+cluster://{{ join "," $r.cluster.nodes }}
{{- else -}}
redis{{ $s }}://{{ $r.host }}:{{ $r.port }}/{{ $r.db }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The same URL with user:$(REDIS_PASSWORD)@ after the scheme (Kubernetes expands the
variable, defined just before it from the Secret). */}}
{{- define "capgate.redisUrlWithPassword" -}}
{{- $url := include "capgate.redisUrl" . -}}
{{- $parts := splitn "://" 2 $url -}}
{{- printf "%s://%s:$(REDIS_PASSWORD)@%s" $parts._0 .Values.redis.username $parts._1 -}}
{{- end -}}

{{- define "capgate.terminationGracePeriodSeconds" -}}
{{- add (ceil .Values.server.gracePeriodSeconds | int) (.Values.server.terminationMarginSeconds | int) -}}
{{- end -}}

{{/* Secret files: mount directory of each reference. */}}
{{- define "capgate.secretDir" -}}/etc/capgate/secrets{{- end -}}

{{- define "capgate.bundlePath" -}}
{{- $b := .Values.policy.bundle -}}
{{- if eq $b.source "image" -}}
{{- $b.image.path -}}
{{- else if eq $b.source "configMap" -}}
{{- if $b.configMap.tarballKey -}}
/etc/capgate/bundle/{{ $b.configMap.tarballKey }}
{{- else -}}
/etc/capgate/bundle
{{- end -}}
{{- else if eq $b.source "volume" -}}
{{- if $b.volume.path -}}
/etc/capgate/bundle/{{ trimPrefix "/" $b.volume.path }}
{{- else -}}
/etc/capgate/bundle
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A sink's TLS section for the capgate configuration. */}}
{{- define "capgate.sinkTls" -}}
{{- $sink := .sink -}}
{{- $dir := printf "%s/sinks/%s" (include "capgate.secretDir" .root) $sink.name -}}
{{- $t := $sink.tls -}}
{{- $out := dict -}}
{{- if and $t.ca $t.ca.existingSecret -}}{{- $_ := set $out "ca_file" (printf "%s/ca/%s" $dir $t.ca.key) -}}{{- end -}}
{{- if and $t.clientCert $t.clientCert.existingSecret -}}
{{- $_ := set $out "cert_file" (printf "%s/client/%s" $dir $t.clientCert.certKey) -}}
{{- $_ := set $out "key_file" (printf "%s/client/%s" $dir $t.clientCert.keyKey) -}}
{{- end -}}
{{- if $t.serverName -}}{{- $_ := set $out "server_name" $t.serverName -}}{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* ---------- the capgate configuration file (capgate.yaml) ---------- */}}
{{- define "capgate.config" -}}
{{- $v := .Values -}}
{{- $sec := include "capgate.secretDir" . -}}
{{- $mode := include "capgate.identityMode" . -}}
{{- /* server */ -}}
{{- $server := dict "listen" (include "capgate.listen" .) "health_listen" (printf "0.0.0.0:%v" $v.server.healthPort) "metrics_listen" (include "capgate.metricsListen" .) "grace_period_seconds" $v.server.gracePeriodSeconds "max_receive_message_bytes" $v.server.maxReceiveMessageBytes "min_time_left_ms" $v.server.minTimeLeftMs -}}
{{- if and (include "capgate.sidecarMode" .) $v.server.unixSocket -}}
{{- $_ := set $server "unix_socket_mode" $v.server.unixSocketMode -}}
{{- end -}}
{{- $ports := list (int $v.server.port) (int $v.server.healthPort) (int $v.server.metricsPort) -}}
{{- if ne (len (uniq $ports)) 3 }}{{ fail "server.port, server.healthPort and server.metricsPort must differ" }}{{ end -}}
{{- if $v.server.tls.enabled -}}
{{- if not $v.server.tls.existingSecret }}{{ fail "server.tls.enabled needs server.tls.existingSecret" }}{{ end -}}
{{- $tls := dict "cert_file" (printf "%s/tls/%s" $sec $v.server.tls.certKey) "key_file" (printf "%s/tls/%s" $sec $v.server.tls.keyKey) -}}
{{- if $v.server.tls.clientCA.existingSecret -}}
{{- $_ := set $tls "client_ca_file" (printf "%s/client-ca/%s" $sec $v.server.tls.clientCA.key) -}}
{{- end -}}
{{- $_ := set $server "tls" $tls -}}
{{- end -}}
{{- /* identity */ -}}
{{- $identity := dict "mode" $mode -}}
{{- if eq $mode "jwt" -}}
{{- $jwt := $v.identity.jwt -}}
{{- $jwks := $jwt.jwks.url -}}
{{- if not $jwks -}}
{{- if not $jwt.jwks.existingSecret.name }}{{ fail "identity mode jwt needs identity.jwt.jwks.url or identity.jwt.jwks.existingSecret.name" }}{{ end -}}
{{- $jwks = printf "%s/jwks/%s" $sec $jwt.jwks.existingSecret.key -}}
{{- end -}}
{{- if not $jwt.issuer }}{{ fail "identity mode jwt needs identity.jwt.issuer" }}{{ end -}}
{{- if not $jwt.audience }}{{ fail "identity mode jwt needs identity.jwt.audience" }}{{ end -}}
{{- $_ := set $identity "jwt" (dict "jwks" $jwks "issuer" $jwt.issuer "audience" $jwt.audience "leeway_seconds" $jwt.leewaySeconds "jwks_refresh_seconds" $jwt.jwksRefreshSeconds) -}}
{{- else if eq $mode "mtls" -}}
{{- if not (and $v.server.tls.enabled $v.server.tls.clientCA.existingSecret) }}{{ fail "identity mode mtls needs server.tls.enabled and server.tls.clientCA.existingSecret" }}{{ end -}}
{{- if not $v.identity.spiffe.trustDomain }}{{ fail "identity mode mtls needs identity.spiffe.trustDomain" }}{{ end -}}
{{- $_ := set $identity "spiffe" (dict "trust_domain" $v.identity.spiffe.trustDomain "id_pattern" $v.identity.spiffe.idPattern "roles" $v.identity.spiffe.roles) -}}
{{- else if not (include "capgate.sidecarMode" .) -}}
{{- fail "identity mode insecure is refused in standalone mode (capgate listens on the pod IP): use jwt or mtls" -}}
{{- end -}}
{{- /* policy */ -}}
{{- $p := $v.policy -}}
{{- $policy := dict "engine" $p.engine "entrypoint" $p.entrypoint "max_bundle_bytes" $p.maxBundleBytes "max_bundle_files" $p.maxBundleFiles -}}
{{- if eq $p.engine "opa" -}}
{{- if not $p.opa.url }}{{ fail "policy.engine opa needs policy.opa.url" }}{{ end -}}
{{- $_ := set $policy "opa" (dict "url" $p.opa.url "timeout_ms" $p.opa.timeoutMs) -}}
{{- else if eq $p.bundle.source "server" -}}
{{- $bs := $p.bundle.server -}}
{{- if not $bs.url }}{{ fail "policy.bundle.source server needs policy.bundle.server.url" }}{{ end -}}
{{- $srv := dict "url" $bs.url "min_delay_seconds" $bs.minDelaySeconds "max_delay_seconds" $bs.maxDelaySeconds "max_backoff_seconds" $bs.maxBackoffSeconds "timeout_seconds" $bs.timeoutSeconds -}}
{{- if $bs.bearerToken.existingSecret -}}{{- $_ := set $srv "bearer_token_file" (printf "%s/bundle-token/%s" $sec $bs.bearerToken.key) -}}{{- end -}}
{{- if $bs.ca.existingSecret -}}{{- $_ := set $srv "ca_file" (printf "%s/bundle-ca/%s" $sec $bs.ca.key) -}}{{- end -}}
{{- $_ := set $policy "bundle_server" $srv -}}
{{- else -}}
{{- if and (eq $p.bundle.source "volume") (not $p.bundle.volume.source) }}{{ fail "policy.bundle.source volume needs policy.bundle.volume.source" }}{{ end -}}
{{- if and (eq $p.bundle.source "configMap") (not $p.bundle.configMap.name) (not $p.bundle.configMap.files) }}{{ fail "policy.bundle.source configMap needs policy.bundle.configMap.name or .files" }}{{ end -}}
{{- $_ := set $policy "bundle" (include "capgate.bundlePath" .) -}}
{{- end -}}
{{- if and (eq $p.engine "embedded") $p.persist.enabled -}}
{{- $_ := set $policy "persist_dir" "/var/cache/capgate/bundles" -}}
{{- end -}}
{{- $signing := dict "verification_key_id" $p.signing.verificationKeyId "signing_alg" $p.signing.signingAlg "exclude_files" $p.signing.excludeFiles -}}
{{- if $p.signing.verificationKey.existingSecret -}}{{- $_ := set $signing "verification_key" (printf "%s/bundle-signing/%s" $sec $p.signing.verificationKey.key) -}}{{- end -}}
{{- if $p.signing.scope -}}{{- $_ := set $signing "scope" $p.signing.scope -}}{{- end -}}
{{- $_ := set $policy "signing" $signing -}}
{{- if and (eq $v.profile "production") (eq $p.engine "embedded") (not $p.signing.verificationKey.existingSecret) -}}
{{- fail "profile production refuses unsigned bundles: set policy.signing.verificationKey.existingSecret" -}}
{{- end -}}
{{- if and (eq $v.profile "production") (eq $p.engine "embedded") (eq $p.bundle.source "image") -}}
{{- fail "profile production: the image's default bundle is unsigned; set policy.bundle.source to server, configMap or volume with a signed bundle" -}}
{{- end -}}
{{- /* budget */ -}}
{{- $budget := dict "redis_url" (include "capgate.redisUrl" .) "deadline_ms" $v.budget.deadlineMs "run_ttl_seconds" $v.budget.runTtlSeconds "reservation_ttl_seconds" $v.budget.reservationTtlSeconds -}}
{{- /* events */ -}}
{{- $e := $v.events -}}
{{- $events := dict "outbox" (dict "path" "/var/lib/capgate/outbox.db" "max_bytes" $e.outbox.maxBytes "fsync_interval_ms" $e.outbox.fsyncIntervalMs) "retry" (dict "initial_backoff_ms" $e.retry.initialBackoffMs "max_backoff_ms" $e.retry.maxBackoffMs) "masked_parameter_names" $e.maskedParameterNames "export_linger_ms" $e.exportLingerMs -}}
{{- $cp := dict "every_events" $e.checkpoint.everyEvents "every_seconds" $e.checkpoint.everySeconds -}}
{{- if $e.checkpoint.signingKey.existingSecret -}}{{- $_ := set $cp "signing_key_file" (printf "%s/checkpoint/%s" $sec $e.checkpoint.signingKey.key) -}}{{- end -}}
{{- $_ := set $events "checkpoint" $cp -}}
{{- $sinks := list -}}
{{- range $s := $e.sinks -}}
{{- $out := dict "type" $s.type "name" $s.name -}}
{{- if hasKey $s "batchSize" }}{{ $_ := set $out "batch_size" $s.batchSize }}{{ end -}}
{{- if eq $s.type "file" -}}
{{- $_ := set $out "path" $s.path -}}
{{- if hasKey $s "maxBytes" }}{{ $_ := set $out "max_bytes" $s.maxBytes }}{{ end -}}
{{- if hasKey $s "backups" }}{{ $_ := set $out "backups" $s.backups }}{{ end -}}
{{- else if eq $s.type "syslog" -}}
{{- $_ := set $out "host" $s.host -}}
{{- $_ := set $out "port" $s.port -}}
{{- if hasKey $s "format" }}{{ $_ := set $out "format" $s.format }}{{ end -}}
{{- if hasKey $s "appName" }}{{ $_ := set $out "app_name" $s.appName }}{{ end -}}
{{- if hasKey $s "facility" }}{{ $_ := set $out "facility" $s.facility }}{{ end -}}
{{- else if eq $s.type "hec" -}}
{{- $_ := set $out "url" $s.url -}}
{{- if not (and $s.token $s.token.existingSecret) }}{{ fail (printf "events.sinks %s: a hec sink needs token.existingSecret" $s.name) }}{{ end -}}
{{- $_ := set $out "token_file" (printf "%s/sinks/%s/token/%s" $sec $s.name $s.token.key) -}}
{{- if hasKey $s "ack" }}{{ $_ := set $out "ack" $s.ack }}{{ end -}}
{{- if hasKey $s "ackTimeoutSeconds" }}{{ $_ := set $out "ack_timeout_seconds" $s.ackTimeoutSeconds }}{{ end -}}
{{- if $s.index }}{{ $_ := set $out "index" $s.index }}{{ end -}}
{{- if hasKey $s "sourcetype" }}{{ $_ := set $out "sourcetype" $s.sourcetype }}{{ end -}}
{{- if hasKey $s "format" }}{{ $_ := set $out "format" $s.format }}{{ end -}}
{{- else if eq $s.type "http" -}}
{{- $_ := set $out "url" $s.url -}}
{{- if hasKey $s "format" }}{{ $_ := set $out "format" $s.format }}{{ end -}}
{{- if $s.headers }}{{ $_ := set $out "headers" $s.headers }}{{ end -}}
{{- else if eq $s.type "kafka" -}}
{{- $_ := set $out "bootstrap_servers" $s.bootstrapServers -}}
{{- $_ := set $out "topic" $s.topic -}}
{{- if hasKey $s "format" }}{{ $_ := set $out "format" $s.format }}{{ end -}}
{{- end -}}
{{- if and (ne $s.type "file") $s.tls $s.tls.enabled -}}
{{- $_ := set $out "tls" (include "capgate.sinkTls" (dict "root" $ "sink" $s) | fromJson) -}}
{{- end -}}
{{- $sinks = append $sinks $out -}}
{{- end -}}
{{- $_ := set $events "sinks" $sinks -}}
{{- $config := dict "profile" $v.profile "server" $server "identity" $identity "policy" $policy "budget" $budget "events" $events -}}
{{- if $e.decisionLog.enabled -}}
{{- $_ := set $config "decision_log" (dict "path" "/var/log/capgate/decisions.jsonl") -}}
{{- end -}}
# Rendered by the capgate Helm chart from its values; secrets are files under
# {{ $sec }}, mounted from Secrets. CAPGATE_* variables override keys.
{{ toYaml $config }}
{{- end -}}

{{/* ---------- probes ---------- */}}

{{/* A native gRPC probe (grpc.health.v1) of the health listener; . = (dict "root" $ "service" NAME). */}}
{{- define "capgate.probeAction" -}}
grpc:
  port: {{ .root.Values.server.healthPort }}
  service: {{ .service }}
{{- end -}}

{{/* ---------- the capgate container ---------- */}}

{{- define "capgate.container" -}}
{{- $v := .Values -}}
{{- $sidecar := include "capgate.sidecarMode" . -}}
- name: {{ if $sidecar }}{{ $v.sidecar.containerName }}{{ else }}capgate{{ end }}
  image: {{ include "capgate.image" . | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args:
    - serve
    - --config
    - /etc/capgate/capgate.yaml
    - --log-level
    - {{ $v.logLevel }}
  {{- if and $sidecar $v.sidecar.native }}
  restartPolicy: Always
  {{- end }}
  {{- /* In the agent's pod the names carry a capgate- prefix (no clash with the agent's
  ports); 127.0.0.1 and the socket are not declared (nothing reaches them from outside). */}}
  {{- $prefix := ternary "capgate-" "" (eq $sidecar "true") }}
  ports:
    {{- if not $sidecar }}
    - name: grpc
      containerPort: {{ $v.server.port }}
      protocol: TCP
    {{- end }}
    - name: {{ $prefix }}health
      containerPort: {{ $v.server.healthPort }}
      protocol: TCP
    {{- if or (not $sidecar) $v.server.metricsOnPodIP }}
    - name: {{ $prefix }}metrics
      containerPort: {{ $v.server.metricsPort }}
      protocol: TCP
    {{- end }}
  {{- if or $v.redis.urlSecret.existingSecret $v.redis.password.existingSecret $v.extraEnv }}
  env:
    {{- if $v.redis.urlSecret.existingSecret }}
    - name: CAPGATE_BUDGET__REDIS_URL
      valueFrom:
        secretKeyRef:
          name: {{ $v.redis.urlSecret.existingSecret }}
          key: {{ $v.redis.urlSecret.key }}
    {{- else if $v.redis.password.existingSecret }}
    - name: REDIS_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ $v.redis.password.existingSecret }}
          key: {{ $v.redis.password.key }}
    - name: CAPGATE_BUDGET__REDIS_URL
      value: {{ include "capgate.redisUrlWithPassword" . | quote }}
    {{- end }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  startupProbe:
    {{- include "capgate.probeAction" (dict "root" . "service" "liveness") | nindent 4 }}
    periodSeconds: {{ $v.probes.startup.periodSeconds }}
    failureThreshold: {{ $v.probes.startup.failureThreshold }}
    timeoutSeconds: {{ $v.probes.startup.timeoutSeconds }}
  readinessProbe:
    {{- include "capgate.probeAction" (dict "root" . "service" "readiness") | nindent 4 }}
    periodSeconds: {{ $v.probes.readiness.periodSeconds }}
    failureThreshold: {{ $v.probes.readiness.failureThreshold }}
    timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
  livenessProbe:
    {{- include "capgate.probeAction" (dict "root" . "service" "liveness") | nindent 4 }}
    periodSeconds: {{ $v.probes.liveness.periodSeconds }}
    failureThreshold: {{ $v.probes.liveness.failureThreshold }}
    timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  securityContext:
    {{- toYaml $v.containerSecurityContext | nindent 4 }}
  volumeMounts:
    {{- range $m := include "capgate.mounts" . | fromYamlArray }}
    - name: {{ $m.name }}
      mountPath: {{ $m.mountPath }}
      {{- with $m.subPath }}
      subPath: {{ . }}
      {{- end }}
      readOnly: {{ $m.readOnly }}
    {{- end }}
{{- end -}}

{{/*
The volumes and their mount points, as one list; capgate.volumes and capgate.container
both read it. Every volume name starts with "capgate-" (they join the agent's pod in
sidecar mode).
*/}}
{{- define "capgate.volumeList" -}}
{{- $v := .Values -}}
{{- $sec := include "capgate.secretDir" . -}}
{{- $full := include "capgate.fullname" . -}}
{{- $sidecar := include "capgate.sidecarMode" . -}}
{{- /* 0440 only where this chart sets the pod's fsGroup (the group that reads them);
in an agent's pod, or without an fsGroup, 0444: UID 10001 must read them. */ -}}
{{- $private := 0444 -}}
{{- if and (not $sidecar) (hasKey $v.podSecurityContext "fsGroup") }}{{ $private = 0440 }}{{ end -}}
{{- $list := list -}}
{{- $list = append $list (dict "name" "capgate-config" "mountPath" "/etc/capgate/capgate.yaml" "subPath" "capgate.yaml" "volume" (dict "configMap" (dict "name" (include "capgate.configMapName" .) "items" (list (dict "key" "capgate.yaml" "path" "capgate.yaml"))))) -}}
{{- $list = append $list (dict "name" "capgate-outbox" "mountPath" "/var/lib/capgate" "rw" true "volume" (dict "emptyDir" (dict "sizeLimit" $v.events.outbox.sizeLimit "medium" $v.events.outbox.medium))) -}}
{{- $list = append $list (dict "name" "capgate-tmp" "mountPath" "/tmp" "rw" true "volume" (dict "emptyDir" (dict "sizeLimit" "64Mi"))) -}}
{{- if and (eq $v.policy.engine "embedded") $v.policy.persist.enabled -}}
{{- $list = append $list (dict "name" "capgate-bundle-store" "mountPath" "/var/cache/capgate/bundles" "rw" true "volume" (dict "emptyDir" (dict "sizeLimit" $v.policy.persist.sizeLimit))) -}}
{{- end -}}
{{- $fileSink := false -}}
{{- range $v.events.sinks }}{{ if eq .type "file" }}{{ $fileSink = true }}{{ end }}{{ end -}}
{{- if or $v.events.decisionLog.enabled $fileSink -}}
{{- $list = append $list (dict "name" "capgate-logs" "mountPath" "/var/log/capgate" "rw" true "volume" (dict "emptyDir" (dict "sizeLimit" $v.events.logSizeLimit))) -}}
{{- end -}}
{{- if and $sidecar $v.server.unixSocket -}}
{{- $list = append $list (dict "name" "capgate-socket" "mountPath" (include "capgate.socketDir" .) "rw" true "volume" (dict "emptyDir" (dict "sizeLimit" "1Mi"))) -}}
{{- end -}}
{{- /* the bundle */ -}}
{{- $b := $v.policy.bundle -}}
{{- if and (eq $v.policy.engine "embedded") (eq $b.source "configMap") -}}
{{- $cm := dict "name" (include "capgate.bundleConfigMapName" .) -}}
{{- if $b.configMap.name -}}
{{- if $b.configMap.items }}{{ $_ := set $cm "items" $b.configMap.items }}{{ end -}}
{{- else -}}
{{- $items := list -}}
{{- range $path, $_ := $b.configMap.files }}{{ $items = append $items (dict "key" (include "capgate.bundleKey" $path) "path" $path) }}{{ end -}}
{{- $_ := set $cm "items" $items -}}
{{- end -}}
{{- $list = append $list (dict "name" "capgate-bundle" "mountPath" "/etc/capgate/bundle" "volume" (dict "configMap" $cm)) -}}
{{- else if and (eq $v.policy.engine "embedded") (eq $b.source "volume") -}}
{{- $list = append $list (dict "name" "capgate-bundle" "mountPath" "/etc/capgate/bundle" "volume" $b.volume.source) -}}
{{- end -}}
{{- /* secrets, as files */ -}}
{{- $refs := list -}}
{{- if $v.server.tls.enabled -}}
{{- $refs = append $refs (dict "id" "tls" "secret" $v.server.tls.existingSecret "keys" (list $v.server.tls.certKey $v.server.tls.keyKey) "mode" $private) -}}
{{- if $v.server.tls.clientCA.existingSecret -}}
{{- $refs = append $refs (dict "id" "client-ca" "secret" $v.server.tls.clientCA.existingSecret "keys" (list $v.server.tls.clientCA.key) "mode" 0444) -}}
{{- end -}}
{{- end -}}
{{- if and (eq (include "capgate.identityMode" .) "jwt") (not $v.identity.jwt.jwks.url) $v.identity.jwt.jwks.existingSecret.name -}}
{{- $refs = append $refs (dict "id" "jwks" "secret" $v.identity.jwt.jwks.existingSecret.name "keys" (list $v.identity.jwt.jwks.existingSecret.key) "mode" 0444) -}}
{{- end -}}
{{- if eq $v.policy.engine "embedded" -}}
{{- if $v.policy.signing.verificationKey.existingSecret -}}
{{- $refs = append $refs (dict "id" "bundle-signing" "secret" $v.policy.signing.verificationKey.existingSecret "keys" (list $v.policy.signing.verificationKey.key) "mode" 0444) -}}
{{- end -}}
{{- if eq $b.source "server" -}}
{{- if $b.server.bearerToken.existingSecret -}}
{{- $refs = append $refs (dict "id" "bundle-token" "secret" $b.server.bearerToken.existingSecret "keys" (list $b.server.bearerToken.key) "mode" $private) -}}
{{- end -}}
{{- if $b.server.ca.existingSecret -}}
{{- $refs = append $refs (dict "id" "bundle-ca" "secret" $b.server.ca.existingSecret "keys" (list $b.server.ca.key) "mode" 0444) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $v.events.checkpoint.signingKey.existingSecret -}}
{{- $refs = append $refs (dict "id" "checkpoint" "secret" $v.events.checkpoint.signingKey.existingSecret "keys" (list $v.events.checkpoint.signingKey.key) "mode" $private) -}}
{{- end -}}
{{- range $i, $s := $v.events.sinks -}}
{{- if and (eq $s.type "hec") $s.token $s.token.existingSecret -}}
{{- $refs = append $refs (dict "id" (printf "sink%d-token" $i) "dir" (printf "sinks/%s/token" $s.name) "secret" $s.token.existingSecret "keys" (list $s.token.key) "mode" $private) -}}
{{- end -}}
{{- if and (ne $s.type "file") $s.tls $s.tls.enabled -}}
{{- if and $s.tls.ca $s.tls.ca.existingSecret -}}
{{- $refs = append $refs (dict "id" (printf "sink%d-ca" $i) "dir" (printf "sinks/%s/ca" $s.name) "secret" $s.tls.ca.existingSecret "keys" (list $s.tls.ca.key) "mode" 0444) -}}
{{- end -}}
{{- if and $s.tls.clientCert $s.tls.clientCert.existingSecret -}}
{{- $refs = append $refs (dict "id" (printf "sink%d-client" $i) "dir" (printf "sinks/%s/client" $s.name) "secret" $s.tls.clientCert.existingSecret "keys" (list $s.tls.clientCert.certKey $s.tls.clientCert.keyKey) "mode" $private) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $r := $refs -}}
{{- $items := list -}}
{{- range $k := $r.keys }}{{ $items = append $items (dict "key" $k "path" $k) }}{{ end -}}
{{- $list = append $list (dict "name" (printf "capgate-secret-%s" $r.id) "mountPath" (printf "%s/%s" $sec (default $r.id $r.dir)) "volume" (dict "secret" (dict "secretName" $r.secret "items" $items "defaultMode" $r.mode))) -}}
{{- end -}}
{{- toYaml $list -}}
{{- end -}}

{{/* ConfigMap keys cannot hold "/": capgate/authz.rego -> capgate__authz.rego */}}
{{- define "capgate.bundleKey" -}}
{{- . | replace "/" "__" -}}
{{- end -}}

{{- define "capgate.mounts" -}}
{{- $out := list -}}
{{- range $e := include "capgate.volumeList" . | fromYamlArray -}}
{{- $m := dict "name" $e.name "mountPath" $e.mountPath "readOnly" (not $e.rw) -}}
{{- if $e.subPath }}{{ $_ := set $m "subPath" $e.subPath }}{{ end -}}
{{- $out = append $out $m -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{- define "capgate.volumes" -}}
{{- $out := list -}}
{{- range $e := include "capgate.volumeList" . | fromYamlArray -}}
{{- $vol := deepCopy $e.volume -}}
{{- if and (hasKey $vol "emptyDir") (not $vol.emptyDir.medium) -}}
{{- $_ := unset $vol.emptyDir "medium" -}}
{{- end -}}
{{- $out = append $out (merge (dict "name" $e.name) $vol) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* sha256 of the rendered configuration: a pod annotation, so a config change rolls the pods. */}}
{{- define "capgate.configChecksum" -}}
{{- include "capgate.config" . | sha256sum -}}
{{- end -}}

{{/* ---------- sidecar entry points (parent chart context) ---------- */}}

{{/* (list PARENT NAME): template NAME on the parent's capgate subchart, which must
exist and be in sidecar mode. */}}
{{- define "capgate.onSubchart" -}}
{{- $capgate := index (default dict (index . 0).Subcharts) "capgate" -}}
{{- if not $capgate -}}
{{- fail "capgate.sidecar.* templates: add the capgate chart as a dependency named capgate (Chart.yaml dependencies: - name: capgate, repository: file://../capgate)" -}}
{{- end -}}
{{- if ne $capgate.Values.mode "sidecar" }}{{ fail "capgate.sidecar.* templates: set capgate.mode: sidecar" }}{{ end -}}
{{- include (index . 1) $capgate -}}
{{- end -}}

{{- define "capgate.sidecar.containers" -}}
{{- include "capgate.onSubchart" (list . "capgate.plainContainer") -}}
{{- end -}}

{{- define "capgate.sidecar.initContainers" -}}
{{- include "capgate.onSubchart" (list . "capgate.nativeSidecar") -}}
{{- end -}}

{{- define "capgate.sidecar.volumes" -}}
{{- include "capgate.onSubchart" (list . "capgate.volumes") -}}
{{- end -}}

{{- define "capgate.sidecar.socketVolumeMount" -}}
{{- include "capgate.onSubchart" (list . "capgate.socketVolumeMount") -}}
{{- end -}}

{{/* The address the agent dials: 127.0.0.1:PORT or unix:/var/run/capgate/capgate.sock */}}
{{- define "capgate.sidecar.address" -}}
{{- include "capgate.onSubchart" (list . "capgate.listen") -}}
{{- end -}}

{{- define "capgate.sidecar.terminationGracePeriodSeconds" -}}
{{- include "capgate.onSubchart" (list . "capgate.terminationGracePeriodSeconds") -}}
{{- end -}}

{{- define "capgate.sidecar.checksumAnnotation" -}}
{{- include "capgate.onSubchart" (list . "capgate.checksumAnnotation") -}}
{{- end -}}

{{/* What they run on the subchart: the container unless sidecar.native (then the
native sidecar, an init container), the agent's socket mount, the annotation. */}}
{{- define "capgate.plainContainer" -}}
{{- if not .Values.sidecar.native }}{{ include "capgate.container" . }}{{ end -}}
{{- end -}}

{{- define "capgate.nativeSidecar" -}}
{{- if .Values.sidecar.native }}{{ include "capgate.container" . }}{{ end -}}
{{- end -}}

{{- define "capgate.socketVolumeMount" -}}
{{- if .Values.server.unixSocket }}
- name: capgate-socket
  mountPath: {{ include "capgate.socketDir" . }}
{{- end }}
{{- end -}}

{{- define "capgate.checksumAnnotation" -}}
checksum/capgate-config: {{ include "capgate.configChecksum" . }}
{{- end -}}
