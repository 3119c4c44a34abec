#!/usr/bin/env bash
# cluster.sh: a real single-node Kubernetes on this machine, from the official components built by
# scripts/build-kubernetes.sh (cached by version) plus Debian's containerd, runc and CNI plugins.
#
#   bash scripts/cluster.sh up       # start it; prints the kubeconfig path, then "started" or "reused"
#   bash scripts/cluster.sh down     # stop what `up` started (and only that); remove the state dir
#   bash scripts/cluster.sh status   # exit 0 when the node is Ready, 1 when not, 3 when not up
#   bash scripts/cluster.sh env      # print KUBECONFIG=… and the addresses (for `eval`)
#   bash scripts/cluster.sh registry add|remove HOST:PORT
#                                    # let pods pull from one more plain-HTTP registry on this host
#                                    # (an air-gap bundle loaded into a registry of its own), or stop
#
# Everything is the cluster's own: a containerd on a private socket and root, etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet and kube-proxy as host processes, one state
# directory, one Linux bridge, pod/service CIDRs nothing else on the machine uses. Pods pull only from
# the local registry (127.0.0.1:5000; docker.io and registry.local:5000 are mirrored to it), which
# also gets the pause and CoreDNS images built here. CoreDNS has no `forward`; traffic from pods
# that would leave the machine is dropped. Storage: a default `kubernetes.io/no-provisioner`
# StorageClass with pre-created hostPath PersistentVolumes.
#
# Host quirks handled (../shared/guide/KUBERNETES.md): cgroup v1 (failCgroupV1: false, cgroupfs),
# no negative oom_score_adj (restrict_oom_score_adj, kube-proxy oomScoreAdj 0), FORWARD policy DROP
# (the CNI firewall plugin), sysctls the kubelet rewrites (saved at up, restored at down).
#
# Environment (defaults in brackets):
#   STELLA_CLUSTER_DIR       state directory [/var/lib/stella-cluster]
#   STELLA_CLUSTER_BRIDGE    bridge name [stellak0]
#   STELLA_CLUSTER_POD_CIDR  cluster pod CIDR [10.213.0.0/16]; the node gets <first /24>
#   STELLA_CLUSTER_SVC_CIDR  service CIDR [10.214.0.0/20]
#   STELLA_CLUSTER_API_PORT  kube-apiserver port on the bridge gateway [6443]
#   STELLA_CLUSTER_PVS       hostPath PersistentVolumes to create [16]
#   STELLA_REGISTRY          the local registry [127.0.0.1:5000]
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"

STATE=${STELLA_CLUSTER_DIR:-/var/lib/stella-cluster}
BRIDGE=${STELLA_CLUSTER_BRIDGE:-stellak0}
POD_CIDR=${STELLA_CLUSTER_POD_CIDR:-10.213.0.0/16}
SVC_CIDR=${STELLA_CLUSTER_SVC_CIDR:-10.214.0.0/20}
API_PORT=${STELLA_CLUSTER_API_PORT:-6443}
PV_COUNT=${STELLA_CLUSTER_PVS:-16}
REGISTRY=${STELLA_REGISTRY:-127.0.0.1:5000}
NODE=stella-node
CLUSTER=stella
ETCD_CLIENT=23791 ETCD_PEER=23801 ETCD_METRICS=23811

# Derived addresses: the node's /24 is the first of the pod CIDR, its .1 the bridge gateway (the
# node IP, the API server's address, where host-side dependencies listen); the DNS service is .10.
pod_base=${POD_CIDR%/*}
NODE_SUBNET="${pod_base%.*}.0/24"
GATEWAY="${pod_base%.*}.1"
svc_base=${SVC_CIDR%/*}
DNS_IP="${svc_base%.*}.10"
API_SERVICE_IP="${svc_base%.*}.1"
FW_CHAIN="STELLA-${BRIDGE^^}"
FW_CHAIN=${FW_CHAIN:0:28}

PKI="$STATE/pki"
KCFG="$STATE/kubeconfig"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
CTRD="$STATE/containerd"
SOCK="$CTRD/containerd.sock"
KUBECONFIG_OUT="$KCFG/admin.conf"

say() { printf 'cluster: %s\n' "$*" >&2; }
die() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }
t0=$(date +%s)
elapsed() { echo "$(($(date +%s) - t0))s"; }

need_root() { [ "$(id -u)" = 0 ] || die "run as root (containerd, the kubelet and the bridge need it)"; }

# --- processes we start: pid, its start time and program, so `down` stops exactly those --------
proc_start() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null || true; }
start_proc() { # name, command...
  local name=$1; shift
  setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  local pid=$!
  sleep 0.05
  printf '%s %s %s\n' "$pid" "$(proc_start "$pid")" "$1" > "$PIDS/$name"
}
alive() { # name: the recorded process still runs (same pid, same start time)
  local f="$PIDS/$1" pid st _prog
  [ -f "$f" ] || return 1
  read -r pid st _prog < "$f"
  [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(proc_start "$pid")" = "$st" ]
}
stop_proc() { # name
  local f="$PIDS/$1" pid _st _prog i
  [ -f "$f" ] || return 0
  read -r pid _st _prog < "$f"
  if alive "$1"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do alive "$1" || break; sleep 0.1; done
    if alive "$1"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  fi
  rm -f "$f"
}
wait_for() { # what, seconds, command...
  local what=$1 secs=$2 i; shift 2
  for i in $(seq 1 $((secs * 2))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  die "$what not ready after ${secs}s (logs: $LOGS)"
}

kc() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT" "$@"; }

# --- up --------------------------------------------------------------------------------------
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

write_configs() {
  mkdir -p "$PKI" "$KCFG" "$LOGS" "$PIDS" "$CTRD/certs.d" "$STATE/cni/net.d" "$STATE/cni/ipam" "$STATE/kubelet" "$STATE/pods-logs" "$STATE/pv" "$STATE/etcd"
  chmod 700 "$STATE/etcd"
  cat > "$STATE/kubeadm.yaml" <<EOF
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: $GATEWAY
  bindPort: $API_PORT
nodeRegistration:
  name: $NODE
  criSocket: unix://$SOCK
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: $VERSION
clusterName: $CLUSTER
certificatesDir: $PKI
controlPlaneEndpoint: $GATEWAY:$API_PORT
networking:
  dnsDomain: cluster.local
  podSubnet: $POD_CIDR
  serviceSubnet: $SVC_CIDR
apiServer:
  certSANs: [127.0.0.1, localhost, $GATEWAY, $API_SERVICE_IP]
EOF
  cat > "$CTRD/config.toml" <<EOF
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$CTRD/certs.d"
EOF
  # Every pull goes to the local registry: itself, and as the mirror of docker.io and of the
  # relocation host the chart tests use (registry.local:5000).
  local h
  for h in "$REGISTRY" docker.io registry.local:5000; do
    mkdir -p "$CTRD/certs.d/$h"
    cat > "$CTRD/certs.d/$h/hosts.toml" <<EOF
server = "http://$REGISTRY"
[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
EOF
  done
  cat > "$STATE/cni/net.d/10-stella.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "stella",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": { "type": "host-local", "dataDir": "$STATE/cni/ipam",
                "ranges": [[{ "subnet": "$NODE_SUBNET", "gateway": "$GATEWAY" }]], "routes": [{ "dst": "0.0.0.0/0" }] }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "firewall", "backend": "iptables" }
  ]
}
EOF
  # Pods resolve through CoreDNS only; pods with dnsPolicy Default get no upstream either.
  printf 'nameserver 127.0.0.1\n' > "$STATE/resolv.conf"
  cat > "$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$SOCK
address: $GATEWAY
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $PKI/ca.crt }
authorization: { mode: Webhook }
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
resolvConf: $STATE/resolv.conf
podLogsDir: $STATE/pods-logs
volumePluginDir: $STATE/kubelet-plugins
failSwapOn: false
rotateCertificates: false
serverTLSBootstrap: false
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
maxPods: 110
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: { memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%" }
EOF
  cat > "$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: { kubeconfig: $KCFG/kube-proxy.conf }
hostnameOverride: $NODE
mode: iptables
clusterCIDR: $POD_CIDR
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
nodePortAddresses: [$GATEWAY/32]
oomScoreAdj: 0
conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s }
EOF
}

# A one-layer OCI image (uncompressed layer, fixed timestamps: the same binary gives the same
# digest) pushed to the local registry; prints the pinned reference.
push_image() { # repo tag entrypoint-binary [args...]
  local repo=$1 tag=$2 bin=$3; shift 3
  local d="$STATE/images/$repo" root
  rm -rf "$d" && mkdir -p "$d/root" "$d/oci/blobs/sha256"
  root="$d/root"
  cp "$bin" "$root/$(basename "$bin")"
  chmod 0755 "$root/$(basename "$bin")"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$d/layer.tar" .
  local layer size cfg cfgsize man mansize entry
  layer=$(sha256sum "$d/layer.tar" | cut -d' ' -f1); size=$(stat -c %s "$d/layer.tar")
  mv "$d/layer.tar" "$d/oci/blobs/sha256/$layer"
  entry=$(printf '"/%s"' "$(basename "$bin")"); for a in "$@"; do entry+=$(printf ',"%s"' "$a"); done
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":[%s],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$entry" "$layer" > "$d/config.json"
  cfg=$(sha256sum "$d/config.json" | cut -d' ' -f1); cfgsize=$(stat -c %s "$d/config.json")
  mv "$d/config.json" "$d/oci/blobs/sha256/$cfg"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' "$cfg" "$cfgsize" "$layer" "$size" > "$d/manifest.json"
  man=$(sha256sum "$d/manifest.json" | cut -d' ' -f1); mansize=$(stat -c %s "$d/manifest.json")
  mv "$d/manifest.json" "$d/oci/blobs/sha256/$man"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' "$man" "$mansize" "$tag" > "$d/oci/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$d/oci/oci-layout"
  if ! curl -sf -o /dev/null -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REGISTRY/v2/k8s/$repo/manifests/sha256:$man"; then
    skopeo copy --quiet --preserve-digests --dest-tls-verify=false "oci:$d/oci:$tag" "docker://$REGISTRY/k8s/$repo:$tag" >&2 \
      || die "pushing $repo to $REGISTRY failed"
    curl -sf -o /dev/null -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REGISTRY/v2/k8s/$repo/manifests/sha256:$man" \
      || die "$REGISTRY does not serve k8s/$repo@sha256:$man after the push (the digest changed on the way)"
  fi
  rm -rf "$d"
  printf '%s/k8s/%s:%s@sha256:%s\n' "$REGISTRY" "$repo" "$tag" "$man"
}

setup_network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    echo "$BRIDGE" > "$STATE/bridge.created"
  fi
  ip addr replace "$GATEWAY/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Nothing from the pods leaves the machine: traffic from the bridge to any other interface is
  # dropped (service traffic is DNATed to pods or to the gateway, so it stays on the bridge/host).
  iptables -N "$FW_CHAIN" 2>/dev/null || iptables -F "$FW_CHAIN"
  iptables -A "$FW_CHAIN" -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
  iptables -C FORWARD -j "$FW_CHAIN" 2>/dev/null || iptables -I FORWARD 1 -j "$FW_CHAIN"
  [ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ] || { echo 0 > "$STATE/ip_forward.saved"; sysctl -qw net.ipv4.ip_forward=1; }
}

api_ready() { curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/apiserver-kubelet-client.crt" --key "$PKI/apiserver-kubelet-client.key" "https://$GATEWAY:$API_PORT/readyz" >/dev/null; }
node_ready() { [ "$(kc get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; }

cmd_up() {
  need_root
  if [ -d "$PIDS" ] && alive kube-apiserver && [ -f "$KUBECONFIG_OUT" ]; then
    BIN=$(cat "$STATE/bin")
    node_ready || die "a cluster is up in $STATE but its node is not Ready (bash scripts/cluster.sh down, then up)"
    say "already up in $STATE (not taken over: the run that started it stops it)"
    printf '%s\nreused\n' "$KUBECONFIG_OUT"
    return 0
  fi
  [ ! -e "$STATE/pids" ] || die "$STATE holds a cluster that is not running: bash scripts/cluster.sh down first"
  BIN=$(bash "$REPO_ROOT/scripts/build-kubernetes.sh" --check 2>/dev/null) \
    || BIN=$(bash "$REPO_ROOT/scripts/build-kubernetes.sh") || die "building Kubernetes failed"
  VERSION=$("$BIN/kubectl" version --client -o json | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -n1)
  local p
  for p in containerd containerd-shim-runc-v2 runc iptables ip curl skopeo; do command -v "$p" >/dev/null || die "$p is missing (bash scripts/host-setup.sh installs it)"; done
  if [ ! -x /usr/lib/cni/bridge ] || [ ! -x /usr/lib/cni/firewall ]; then die "CNI plugins missing in /usr/lib/cni (apt-get install containernetworking-plugins)"; fi
  curl -sf -o /dev/null "http://$REGISTRY/v2/" || die "the local registry $REGISTRY does not answer (bash scripts/host-setup.sh starts it)"
  for p in "$GATEWAY:$API_PORT" "127.0.0.1:$ETCD_CLIENT" "127.0.0.1:$ETCD_PEER" "$GATEWAY:10250" 127.0.0.1:10248 127.0.0.1:10249 127.0.0.1:10256 127.0.0.1:10257 127.0.0.1:10259; do
    ! ss -Hltn "src ${p%:*}" "sport = :${p##*:}" 2>/dev/null | grep -q . || die "port $p is taken"
  done
  if ip route show | grep -v "dev $BRIDGE" | grep -qE "^(${NODE_SUBNET%.*}\.|${svc_base%.*}\.)"; then die "the CIDRs $POD_CIDR/$SVC_CIDR overlap a route of this machine (set STELLA_CLUSTER_POD_CIDR/SVC_CIDR)"; fi

  mkdir -p "$STATE" "$PIDS" "$LOGS"
  printf '%s\n' "$BIN" > "$STATE/bin"
  # The kubelet adds a KUBE-FIREWALL chain (localnet protection) to filter INPUT/OUTPUT: `down`
  # removes it only when it was not there before.
  iptables -S KUBE-FIREWALL >/dev/null 2>&1 || touch "$STATE/kube-firewall.ours"
  # Likewise the CNI firewall plugin's CNI-FORWARD / CNI-ADMIN chains.
  iptables -S CNI-FORWARD >/dev/null 2>&1 || touch "$STATE/cni-firewall.ours"
  say "Kubernetes $VERSION from $BIN; state $STATE ($(elapsed))"
  for p in "${SYSCTLS[@]}"; do printf '%s=%s\n' "$p" "$(sysctl -n "$p")"; done > "$STATE/sysctl.saved"

  PAUSE_IMAGE=$(push_image pause stella "$BIN/pause")
  COREDNS_IMAGE=$(push_image coredns "$(sed -n 's|^require github.com/coredns/coredns \(v[^ ]*\)$|\1|p' "$REPO_ROOT/tools/kubernetes/coredns/go.mod")" "$BIN/coredns")
  say "images: $PAUSE_IMAGE, $COREDNS_IMAGE ($(elapsed))"
  write_configs
  setup_network

  "$BIN/kubeadm" init phase certs all --config "$STATE/kubeadm.yaml" >>"$LOGS/kubeadm.log" 2>&1 || die "kubeadm certs failed (see $LOGS/kubeadm.log)"
  "$BIN/kubeadm" init phase kubeconfig all --config "$STATE/kubeadm.yaml" --kubeconfig-dir "$KCFG" >>"$LOGS/kubeadm.log" 2>&1 || die "kubeadm kubeconfig failed (see $LOGS/kubeadm.log)"
  "$BIN/kubeadm" kubeconfig user --config "$STATE/kubeadm.yaml" --client-name system:kube-proxy > "$KCFG/kube-proxy.conf" 2>>"$LOGS/kubeadm.log" || die "kubeadm kube-proxy kubeconfig failed"
  # The kubelet's serving certificate, signed by the cluster CA (the API server verifies it).
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$NODE" -keyout "$PKI/kubelet.key" -out "$PKI/kubelet.crt" \
    -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -addext "subjectAltName=IP:$GATEWAY,IP:127.0.0.1,DNS:$NODE" >/dev/null 2>&1 || die "kubelet serving certificate failed"
  chmod 600 "$KCFG"/*.conf
  say "certificates and kubeconfigs ($(elapsed))"

  start_proc containerd containerd --config "$CTRD/config.toml"
  start_proc etcd "$BIN/etcd" --name "$CLUSTER" --data-dir "$STATE/etcd" \
    --listen-client-urls "https://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls "https://127.0.0.1:$ETCD_CLIENT" \
    --listen-peer-urls "https://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "https://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "$CLUSTER=https://127.0.0.1:$ETCD_PEER" --listen-metrics-urls "http://127.0.0.1:$ETCD_METRICS" \
    --cert-file "$PKI/etcd/server.crt" --key-file "$PKI/etcd/server.key" --client-cert-auth --trusted-ca-file "$PKI/etcd/ca.crt" \
    --peer-cert-file "$PKI/etcd/peer.crt" --peer-key-file "$PKI/etcd/peer.key" --peer-client-cert-auth --peer-trusted-ca-file "$PKI/etcd/ca.crt" \
    --snapshot-count 10000 --unsafe-no-fsync
  wait_for etcd 60 curl -sf "http://127.0.0.1:$ETCD_METRICS/health"
  start_proc kube-apiserver "$BIN/kube-apiserver" --advertise-address "$GATEWAY" --bind-address "$GATEWAY" --secure-port "$API_PORT" \
    --allow-privileged=true --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --client-ca-file "$PKI/ca.crt" \
    --etcd-servers "https://127.0.0.1:$ETCD_CLIENT" --etcd-cafile "$PKI/etcd/ca.crt" --etcd-certfile "$PKI/apiserver-etcd-client.crt" --etcd-keyfile "$PKI/apiserver-etcd-client.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --requestheader-allowed-names front-proxy-client --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
    --requestheader-extra-headers-prefix X-Remote-Extra- --requestheader-group-headers X-Remote-Group --requestheader-username-headers X-Remote-User \
    --service-account-issuer https://kubernetes.default.svc.cluster.local --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SVC_CIDR" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" --profiling=false
  wait_for kube-apiserver 120 api_ready
  say "etcd and kube-apiserver ready ($(elapsed))"
  # Since 1.29 admin.conf's group kubeadm:cluster-admins needs this binding (made as system:masters).
  "$BIN/kubectl" --kubeconfig "$KCFG/super-admin.conf" create clusterrolebinding kubeadm:cluster-admins --clusterrole cluster-admin --group kubeadm:cluster-admins >/dev/null
  # The API server's client at the kubelets (logs, exec, port-forward), as kubeadm binds it.
  "$BIN/kubectl" --kubeconfig "$KCFG/super-admin.conf" create clusterrolebinding kube-apiserver-kubelet-client --clusterrole system:kubelet-api-admin --user kube-apiserver-kubelet-client >/dev/null
  start_proc kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$KCFG/controller-manager.conf" \
    --authentication-kubeconfig "$KCFG/controller-manager.conf" --authorization-kubeconfig "$KCFG/controller-manager.conf" \
    --bind-address 127.0.0.1 --client-ca-file "$PKI/ca.crt" --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
    --cluster-name "$CLUSTER" --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --controllers '*,bootstrapsigner,tokencleaner' --leader-elect=false --root-ca-file "$PKI/ca.crt" \
    --service-account-private-key-file "$PKI/sa.key" --use-service-account-credentials=true \
    --allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 --service-cluster-ip-range "$SVC_CIDR"
  start_proc kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$KCFG/scheduler.conf" --authentication-kubeconfig "$KCFG/scheduler.conf" \
    --authorization-kubeconfig "$KCFG/scheduler.conf" --bind-address 127.0.0.1 --leader-elect=false
  wait_for containerd 30 test -S "$SOCK"
  start_proc kubelet "$BIN/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$KCFG/kubelet.conf" --root-dir "$STATE/kubelet" \
    --node-ip "$GATEWAY" --hostname-override "$NODE"
  start_proc kube-proxy "$BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"
  wait_for "the node" 120 node_ready
  say "node $NODE Ready ($(elapsed))"

  apply_addons
  wait_for CoreDNS 120 kc -n kube-system wait --for=condition=Available deployment/coredns --timeout=2s
  say "CoreDNS available; cluster up in $(elapsed); KUBECONFIG=$KUBECONFIG_OUT"
  printf '%s\nstarted\n' "$KUBECONFIG_OUT"
}

apply_addons() {
  local i pvs=""
  for i in $(seq 1 "$PV_COUNT"); do
    mkdir -p "$STATE/pv/pv$i" && chmod 0777 "$STATE/pv/pv$i"
    pvs+="---
apiVersion: v1
kind: PersistentVolume
metadata: { name: stella-pv$i, labels: { stellaops.io/cluster: $CLUSTER } }
spec:
  capacity: { storage: 20Gi }
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local
  hostPath: { path: $STATE/pv/pv$i, type: Directory }
  nodeAffinity: { required: { nodeSelectorTerms: [ { matchExpressions: [ { key: kubernetes.io/hostname, operator: In, values: [$NODE] } ] } ] } }
"
  done
  kc apply -f - >>"$LOGS/addons.log" 2>&1 <<EOF || die "applying the add-ons failed (see $LOGS/addons.log)"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations: { storageclass.kubernetes.io/is-default-class: "true" }
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
$pvs---
apiVersion: v1
kind: ServiceAccount
metadata: { name: coredns, namespace: kube-system }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: system:coredns }
rules:
  - { apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch] }
  - { apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: system:coredns }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns }
subjects: [ { kind: ServiceAccount, name: coredns, namespace: kube-system } ]
---
apiVersion: v1
kind: ConfigMap
metadata: { name: coredns, namespace: kube-system }
data:
  Corefile: |
    .:53 {
        errors
        health
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            ttl 30
        }
        prometheus :9153
        cache 30
        loop
        reload
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: coredns, namespace: kube-system, labels: { k8s-app: kube-dns } }
spec:
  replicas: 1
  selector: { matchLabels: { k8s-app: kube-dns } }
  template:
    metadata: { labels: { k8s-app: kube-dns } }
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      containers:
        - name: coredns
          image: $COREDNS_IMAGE
          args: [-conf, /etc/coredns/Corefile]
          ports:
            - { name: dns, containerPort: 53, protocol: UDP }
            - { name: dns-tcp, containerPort: 53, protocol: TCP }
            - { name: metrics, containerPort: 9153, protocol: TCP }
          readinessProbe: { httpGet: { path: /ready, port: 8181 }, periodSeconds: 2 }
          livenessProbe: { httpGet: { path: /health, port: 8080 }, initialDelaySeconds: 10 }
          resources: { requests: { cpu: 50m, memory: 32Mi }, limits: { memory: 128Mi } }
          securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: [ALL], add: [NET_BIND_SERVICE] } }
          volumeMounts: [ { name: config, mountPath: /etc/coredns, readOnly: true } ]
      volumes: [ { name: config, configMap: { name: coredns } } ]
---
apiVersion: v1
kind: Service
metadata: { name: kube-dns, namespace: kube-system, labels: { k8s-app: kube-dns } }
spec:
  clusterIP: $DNS_IP
  selector: { k8s-app: kube-dns }
  ports:
    - { name: dns, port: 53, protocol: UDP }
    - { name: dns-tcp, port: 53, protocol: TCP }
    - { name: metrics, port: 9153, protocol: TCP }
EOF
}

# --- down ------------------------------------------------------------------------------------
cmd_down() {
  need_root
  [ -d "$STATE" ] || { say "nothing to stop ($STATE does not exist)"; return 0; }
  BIN=$(cat "$STATE/bin" 2>/dev/null || true)
  if alive kube-apiserver && alive kubelet && [ -x "$BIN/kubectl" ]; then
    # Nothing new gets scheduled or recreated; the kubelet then tears every pod down through
    # the CRI (CNI DEL releases addresses and veths) before it stops.
    stop_proc kube-controller-manager
    stop_proc kube-scheduler
    kc delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
    local i
    for i in $(seq 1 60); do
      [ -z "$(ctr --address "$SOCK" -n k8s.io tasks ls -q 2>/dev/null)" ] && break
      sleep 1
    done
  fi
  stop_proc kube-controller-manager
  stop_proc kube-scheduler
  stop_proc kube-proxy
  stop_proc kubelet
  if alive containerd; then
    local c
    for c in $(ctr --address "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$SOCK" -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
    done
    sleep 1
    for c in $(ctr --address "$SOCK" -n k8s.io containers ls -q 2>/dev/null); do
      ctr --address "$SOCK" -n k8s.io tasks rm -f "$c" >/dev/null 2>&1 || true
    done
  fi
  stop_proc containerd
  stop_proc kube-apiserver
  stop_proc etcd
  # kube-proxy's rules, the kubelet's canaries, our FORWARD chain, the bridge, the sysctls.
  if [ -x "$BIN/kube-proxy" ]; then "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
  local t ch
  for t in filter nat mangle; do
    for ch in KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
      if iptables -t "$t" -F "$ch" 2>/dev/null; then iptables -t "$t" -X "$ch" 2>/dev/null || true; fi
    done
  done
  if [ -f "$STATE/kube-firewall.ours" ]; then
    while iptables -D INPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    while iptables -D OUTPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    if iptables -F KUBE-FIREWALL 2>/dev/null; then iptables -X KUBE-FIREWALL 2>/dev/null || true; fi
  fi
  if [ -f "$STATE/cni-firewall.ours" ]; then
    while iptables -D FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD 2>/dev/null; do :; done
    for ch in CNI-FORWARD CNI-ADMIN; do
      if iptables -F "$ch" 2>/dev/null; then iptables -X "$ch" 2>/dev/null || true; fi
    done
  fi
  while iptables -D FORWARD -j "$FW_CHAIN" 2>/dev/null; do :; done
  if iptables -F "$FW_CHAIN" 2>/dev/null; then iptables -X "$FW_CHAIN" 2>/dev/null || true; fi
  if [ -f "$STATE/bridge.created" ]; then ip link del "$(cat "$STATE/bridge.created")" 2>/dev/null || true; fi
  if [ -f "$STATE/sysctl.saved" ]; then
    while IFS='=' read -r k v; do sysctl -qw "$k=$v" 2>/dev/null || true; done < "$STATE/sysctl.saved"
  fi
  if [ -f "$STATE/ip_forward.saved" ]; then sysctl -qw net.ipv4.ip_forward=0 || true; fi
  # Mounts left under the state dir (pod volumes, container root filesystems), deepest first.
  awk -v s="$STATE/" 'index($2, s) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then say "stopped; state kept in $STATE"; else rm -rf "$STATE"; say "stopped; $STATE removed"; fi
}

cmd_status() {
  if [ ! -f "$STATE/bin" ] || ! alive kube-apiserver; then say "not up ($STATE)"; return 3; fi
  BIN=$(cat "$STATE/bin")
  local n
  for n in containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
    if alive "$n"; then say "$n: running"; else say "$n: NOT running"; fi
  done
  if node_ready; then say "node $NODE Ready; KUBECONFIG=$KUBECONFIG_OUT"; return 0; fi
  say "node $NODE not Ready"
  return 1
}

cmd_env() {
  printf 'KUBECONFIG=%s\nSTELLA_CLUSTER_GATEWAY=%s\nSTELLA_CLUSTER_POD_CIDR=%s\nSTELLA_CLUSTER_SVC_CIDR=%s\nSTELLA_CLUSTER_BIN=%s\n' \
    "$KUBECONFIG_OUT" "$GATEWAY" "$POD_CIDR" "$SVC_CIDR" "$(cat "$STATE/bin" 2>/dev/null || bash "$REPO_ROOT/scripts/build-kubernetes.sh" --check 2>/dev/null || true)"
}

# A registry of its own for the pulls of HOST:PORT (containerd reads certs.d at every pull: no restart).
cmd_registry() {
  local action=${1:-} host=${2:-}
  [[ "$host" =~ ^[A-Za-z0-9.-]+:[0-9]+$ ]] || die "registry $action: HOST:PORT expected, got '${host}'"
  [ -d "$CTRD/certs.d" ] || die "registry $action: the cluster is not up ($CTRD/certs.d is missing)"
  case "$host" in "$REGISTRY" | docker.io | registry.local:5000) die "registry $action: $host is the cluster's own mirror configuration" ;; esac
  case "$action" in
    add)
      mkdir -p "$CTRD/certs.d/$host"
      printf 'server = "http://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n  skip_verify = true\n' "$host" "$host" > "$CTRD/certs.d/$host/hosts.toml"
      say "pods pull $host/… from http://$host" ;;
    remove) rm -rf "${CTRD:?}/certs.d/$host"; say "$host removed" ;;
    *) die "registry: add or remove, got '$action'" ;;
  esac
}

case "${1:-}" in
  up) cmd_up ;;
  registry) cmd_registry "${2:-}" "${3:-}" ;;
  down) if [ "${2:-}" = "--keep" ]; then KEEP=1; fi; cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 up | down [--keep] | status | env | registry add|remove HOST:PORT" >&2; exit 2 ;;
esac
