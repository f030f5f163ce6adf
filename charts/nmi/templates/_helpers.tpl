{{/* Names, labels and nmi's command line. */}}

{{- define "nmi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nmi.fullname" -}}
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

{{- define "nmi.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "nmi.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "nmi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nmi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "nmi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "nmi.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: nmi
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "nmi.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
nmi's flags: [values key, flag name], in `nmi --help` order. Every flag of nmi has a row except
--help, --version, --node (always $(NODE_NAME)), --daemonset-name (the DaemonSet's own name, with
removeRulesOnUninstall) and the klog compatibility flags, which have no
effect (pass them through extraArgs if a command line must keep them). tests/deploy checks this
table against the flags of the nmi binary.
*/}}
{{- define "nmi.flagTable" -}}
- [nmiListenAddress, nmi-listen-address]
- [nmiPort, nmi-port]
- [httpProbePort, http-probe-port]
- [prometheusPort, prometheus-port]
- [ioThreads, io-threads]
- [maxConnections, max-connections]
- [maxConnectionsPerPeer, max-connections-per-peer]
- [headerReadTimeoutSec, header-read-timeout-sec]
- [idleTimeoutSec, idle-timeout-sec]
- [shutdownGraceSec, shutdown-grace-sec]
- [handoverWaitSec, handover-wait-sec]
- [metadataIp, metadata-ip]
- [metadataPort, metadata-port]
- [imdsTokenEndpoint, imds-token-endpoint]
- [metadataHeaderRequired, metadata-header-required]
- [blockInstanceMetadata, block-instance-metadata]
- [disableHostToken, disable-host-token]
- [setRetryAfterHeader, set-retry-after-header]
- [proxyMaxConcurrent, proxy-max-concurrent]
- [proxyMaxConcurrentPerPod, proxy-max-concurrent-per-pod]
- [operationMode, operation-mode]
- [forceNamespaced, forceNamespaced]
- [micNamespace, MICNamespace]
- [enableScaleFeatures, enableScaleFeatures]
- [retryAttemptsForCreated, retry-attempts-for-created]
- [retryAttemptsForAssigned, retry-attempts-for-assigned]
- [findIdentityRetryInterval, find-identity-retry-interval]
- [podWaitTimeoutMs, pod-wait-timeout-ms]
- [identityFile, identity-file]
- [kubeconfig, kubeconfig]
- [serviceAccountDir, service-account-dir]
- [watchSilenceTimeoutSec, watch-silence-timeout-sec]
- [secretCacheTtlSec, secret-cache-ttl-sec]
- [aadCaFile, aad-ca-file]
- [aadAllowedHosts, aad-allowed-hosts]
- [customUserAgent, custom-user-agent]
- [tokenRetryBudgetSec, token-retry-budget-sec]
- [tokenRefreshAheadSec, token-refresh-ahead-sec]
- [tokenMinLifetimeSec, token-min-lifetime-sec]
- [tokenCacheMaxEntries, token-cache-max-entries]
- [imdsMaxConcurrent, imds-max-concurrent]
- [perPodMaxTokens, per-pod-max-tokens]
- [perPodMissRate, per-pod-miss-rate]
- [perPodMissBurst, per-pod-miss-burst]
- [iptUpdateIntervalSec, ipt-update-interval-sec]
- [iptCheckIntervalSec, ipt-check-interval-sec]
- [iptablesBackend, iptables-backend]
- [iptablesLockFile, iptables-lock-file]
- [disableInterception, disable-interception]
- [enableConntrackDeletion, enable-conntrack-deletion]
- [allowNetworkPluginKubenet, allow-network-plugin-kubenet]
- [kubeletConfig, kubelet-config]
- [logFormat, log-format]
- [v, v]
{{- end -}}

{{/* The effective value of forceNamespaced: managed mode implies it (the schema rejects false). */}}
{{- define "nmi.forceNamespaced" -}}
{{- if eq .Values.operationMode "managed" -}}
true
{{- else if kindIs "invalid" .Values.forceNamespaced -}}
false
{{- else -}}
{{- .Values.forceNamespaced -}}
{{- end -}}
{{- end -}}

{{/*
A value as nmi reads it. YAML numbers arrive as float64, which Go prints as 1e+06: whole numbers
are printed as integers.
*/}}
{{- define "nmi.flagValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}
{{- int64 . -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/* nmi's arguments, one per line ("--flag=value"), for the container's args. */}}
{{- define "nmi.args" -}}
{{- $values := .Values -}}
{{- $forced := include "nmi.forceNamespaced" . -}}
- "--node=$(NODE_NAME)"
{{- if .Values.removeRulesOnUninstall }}
- {{ printf "--daemonset-name=%s" (include "nmi.fullname" .) | toJson }}
{{- end }}
{{- range $row := include "nmi.flagTable" . | fromYamlArray }}
{{- $key := index $row 0 }}
{{- $flag := index $row 1 }}
{{- $value := index $values $key }}
{{- if eq $key "forceNamespaced" }}
{{- $value = $forced }}
{{- end }}
{{- if not (kindIs "invalid" $value) }}
- {{ printf "--%s=%s" $flag (include "nmi.flagValue" $value) | toJson }}
{{- end }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | toJson }}
{{- end }}
{{- end -}}

{{- define "nmi.kubeletConfigPath" -}}
{{- default "/etc/default/kubelet" .Values.kubeletConfig -}}
{{- end -}}

{{- define "nmi.lockFilePath" -}}
{{- default "/run/xtables.lock" .Values.iptablesLockFile -}}
{{- end -}}

{{/* Checks the schema cannot express. */}}
{{- define "nmi.validate" -}}
{{- $ports := dict -}}
{{- range $key := list "nmiPort" "httpProbePort" "prometheusPort" -}}
{{- $p := toString (include "nmi.flagValue" (index $.Values $key)) -}}
{{- if hasKey $ports $p -}}
{{- fail (printf "%s and %s are both %s: nmi needs three different ports" (get $ports $p) $key $p) -}}
{{- end -}}
{{- $_ := set $ports $p $key -}}
{{- end -}}
{{- $noSurge := has (include "nmi.flagValue" .Values.updateStrategy.maxSurge) (list "0" "0%") -}}
{{- $noUnavailable := has (include "nmi.flagValue" .Values.updateStrategy.maxUnavailable) (list "0" "0%") -}}
{{- if and .Values.metrics.declareContainerPort (not $noSurge) -}}
{{- fail "metrics.declareContainerPort needs updateStrategy.maxSurge 0: with hostNetwork a declared port is a hostPort, which blocks the surge pod" -}}
{{- end -}}
{{- if and $noSurge $noUnavailable -}}
{{- fail "updateStrategy: maxSurge and maxUnavailable cannot both be 0" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled" -}}
{{- end -}}
{{- end -}}
