#!/bin/sh
# A stand-in for deploy-hub.sh that `cargo xtask demo` and the end-to-end tests use instead of
# helm (through --var hub_deployer=./hooks/demo-hub.sh): it "deploys" one hub (staging or
# prod) on a machine with no Kubernetes. It writes a marker into the hub's home directories
# (the NFS export's path, where the pool is mounted on this machine), and serves HTTPS on
# $INGRESS_IP:443 with a certificate for $HUB_HOST signed by the demo CA in $DEMO_CA_DIR, so
# that the TLS check can pass. DEMO_HUB_SECONDS_<RELEASE> models helm's pace (scaled).
# Idempotent, like helm upgrade --install: a second run replaces the server.
#
# demo-hub.sh RELEASE [--idle | --activate], for a warm standby (specs/data100/warm):
# - --idle deploys the release without its home directories (no marker, no NFS_EXPORT
#   needed), at helm's pace: what a standby generation runs ahead of any failover;
# - --activate only writes the marker, once the pool is mounted, at the pace of scaling an
#   idle release up (DEMO_HUB_ACTIVATE_SECONDS_<RELEASE>, else DEMO_HUB_ACTIVATE_SECONDS,
#   else 0); the idle release must already serve on $INGRESS_IP;
# - with neither, both at once, as a cold failover runs it.
#
# With a static IP that outlives generations (INGRESS_IP_NAME and INGRESS_IP_GROUP set, as
# deploy-hub.sh takes them), the hub does not listen on the address itself: --idle serves on a
# port of 127.0.0.1 of its cluster's own (the "pods"), and --activate creates the proxy's
# Service on the cluster's API server (from $KUBECONFIG) with the annotations that ask AKS for
# the address by name, and waits until the Service has it, as `helm --wait` waits for a
# LoadBalancer's address (DEMO_HUB_SERVICE_SECONDS, 120 by default): the ARM simulator's AKS
# puts the address on the cluster's load balancer and forwards it to the pods. The idle
# release asks for nothing, so a standby never takes the address.
set -eu
release="$1"
mode="${2:-}"
case "$mode" in
  "" | --idle | --activate) ;;
  *)
    echo "demo-hub.sh: unknown option \`$mode\`: give --idle, --activate or neither" >&2
    exit 2
    ;;
esac
: "${DEMO_CA_DIR:?set DEMO_CA_DIR to the demo CA folder (ca.pem, ca.key)}"
# One folder per ingress address: its HTTPS server (pid, log, a certificate and key per hub
# name) and each release's certificate request. Each generation has its own ingress, so the
# deploys of two generations (a serving one and its standby) never share a file.
if [ -n "${INGRESS_IP_NAME:-}" ]; then
  # One folder per cluster: both generations' hubs serve the same address, in turn.
  : "${KUBECONFIG:?set KUBECONFIG: the hub's Service is made on its cluster}"
  # A drill's cluster has the same instance address as production's, so its kubeconfig the
  # same file name in the drill's own state folder: the drill's id tells their servers apart.
  where="$(basename "$KUBECONFIG" .yaml)${FERRY_DRILL_ID:+.drill-$FERRY_DRILL_ID}"
  bind_address=127.0.0.1
  bind_port=0
else
  where="$INGRESS_IP"
  bind_address="$INGRESS_IP"
  bind_port=443
fi
server="$DEMO_CA_DIR/hubs/$where"
state="$server/$release"

# Staging and prod share their ingress's server, and a standby deploys both at once: one
# deploy at a time restarts or inspects it, under an flock, which the kernel lets go of when
# its holder dies however it dies (a `kill -9` of the apply and its hooks included).
lock="$server/lock"
take_lock() {
  mkdir -p "$server"
  exec 9>"$lock"
  if ! flock -w 30 9; then
    echo "hub-$release: another demo-hub.sh has held $lock for 30 s" >&2
    exit 1
  fi
}
release_lock() {
  flock -u 9
  exec 9>&-
}

# The proxy's Service on the cluster's API server, asking AKS for the static IP by name, and
# the wait until AKS gave it (its load balancer then forwards the address to the pods).
ask_for_the_address() {
  python3 - "$release" "$(cat "$server/port")" <<'PYTHON'
import base64, json, os, ssl, sys, time, urllib.request
release, port = sys.argv[1], sys.argv[2]
kubeconfig = open(os.environ["KUBECONFIG"]).read()
def field(name):
    for line in kubeconfig.splitlines():
        line = line.strip()
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
server = field("server")
context = ssl.create_default_context(cadata=base64.b64decode(field("certificate-authority-data")).decode())
headers = {"Authorization": "Bearer " + field("token"), "Content-Type": "application/json"}
def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server + path, method=method, data=data, headers=headers)
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return json.load(response)
# One Service per cluster for both hubs, as one ingress serves both names (by SNI): the
# spec's static_ip.ingress names it (`service`).
path = "/api/v1/namespaces/hub-ingress/services/proxy-public"
call("PUT", path, {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "proxy-public", "namespace": "hub-ingress", "annotations": {
        "service.beta.kubernetes.io/azure-pip-name": os.environ["INGRESS_IP_NAME"],
        "service.beta.kubernetes.io/azure-load-balancer-resource-group": os.environ["INGRESS_IP_GROUP"],
        "ferry-sim/backend": "127.0.0.1:" + port}},
    "spec": {"type": "LoadBalancer", "ports": [{"name": "https", "port": 443, "targetPort": 443}]}})
wait = float(os.environ.get("DEMO_HUB_SERVICE_SECONDS", "120"))
deadline = time.time() + wait
while True:
    service = call("GET", path)
    ingress = service.get("status", {}).get("loadBalancer", {}).get("ingress") or []
    if any(item.get("ip") == os.environ["INGRESS_IP"] for item in ingress):
        break
    if time.time() > deadline:
        sys.exit("hub-%s: its Service has not got %s after %g s: %s" % (
            release, os.environ["INGRESS_IP"], wait, json.dumps(service.get("status"))))
    time.sleep(0.1)
PYTHON
}

# The marker: the hub found its home directories on the pool.
write_marker() {
  home="${DEMO_HOME_ROOT:-/export/home}/$release"
  mkdir -p "$home"
  printf '%s deployed on %s with kubeconfig %s\n' "hub-$release" "${INGRESS_IP:-its pods}" "$KUBECONFIG" > "$home/.hub-deployed"
}

if [ "$mode" = --activate ]; then
  # The idle release serves this hub's name on this ingress: its server runs and holds the
  # name's certificate (read from its files, which costs nothing beside the pace below).
  take_lock
  if ! [ -f "$server/$HUB_HOST.pem" ] || ! [ -f "$server/pid" ] || ! kill -0 "$(cat "$server/pid")" 2>/dev/null; then
    echo "hub-$release is not deployed on $where: run demo-hub.sh $release --idle first" >&2
    exit 1
  fi
  release_lock
  # Scaling the idle release up: its pods start and mount the home directories.
  case "$release" in
    staging) pace="${DEMO_HUB_ACTIVATE_SECONDS_STAGING:-${DEMO_HUB_ACTIVATE_SECONDS:-0}}" ;;
    *) pace="${DEMO_HUB_ACTIVATE_SECONDS_PROD:-${DEMO_HUB_ACTIVATE_SECONDS:-0}}" ;;
  esac
  sleep "$pace"
  if [ -n "${INGRESS_IP_NAME:-}" ]; then
    ask_for_the_address
  fi
  write_marker
  echo "hub-$release active on $INGRESS_IP with its home directories"
  exit 0
fi

if [ "$mode" != --idle ]; then
  write_marker
fi
mkdir -p "$state"

# helm's pace on the day, scaled like the simulator's clock.
case "$release" in
  staging) pace="${DEMO_HUB_SECONDS_STAGING:-0}" ;;
  *) pace="${DEMO_HUB_SECONDS_PROD:-0}" ;;
esac
sleep "$pace"

# A certificate for the hub's name, signed by the demo CA.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=$HUB_HOST" -keyout "$state/key.pem" -out "$state/request.pem" 2>/dev/null
printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$HUB_HOST" > "$state/extensions"
openssl x509 -req -in "$state/request.pem" -CA "$DEMO_CA_DIR/ca.pem" -CAkey "$DEMO_CA_DIR/ca.key" \
  -CAcreateserial -days 30 -extfile "$state/extensions" -out "$state/certificate.pem" 2>/dev/null

# The hub itself: one HTTPS server per ingress address, serving every hub name deployed there
# (staging and prod share the ingress, told apart by SNI).
take_lock
cp "$state/certificate.pem" "$server/$HUB_HOST.pem"
cp "$state/key.pem" "$server/$HUB_HOST.key"
if [ -f "$server/pid" ]; then
  old="$(cat "$server/pid")"
  kill "$old" 2>/dev/null || true
  # The old server lets go of the address before the new one binds it: gone, or a zombie
  # that its new parent has not reaped yet (a zombie holds no socket).
  for _ in $(seq 1 50); do
    case "$(ps -o stat= -p "$old" 2>/dev/null)" in
      "" | Z*) break ;;
    esac
    sleep 0.1
  done
fi
# Detached, with its output in a file: the hook ends while the hub keeps serving.
rm -f "$server/port"
setsid python3 - "$bind_address" "$bind_port" "$server" "$where" > "$server/log" 2>&1 < /dev/null 9>&- <<'PYTHON' &
import http.server, os, ssl, sys
address, port, folder, where = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
contexts = {}
for name in os.listdir(folder):
    if name.endswith(".pem"):
        host = name[:-4]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(os.path.join(folder, name), os.path.join(folder, host + ".key"))
        contexts[host] = context
default = next(iter(contexts.values()))
def choose(connection, server_name, _):
    if server_name in contexts:
        connection.context = contexts[server_name]
default.sni_callback = choose
class Hub(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("JupyterHub (ferry demo stand-in) on %s\n" % where).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *arguments):
        pass
httpd = http.server.ThreadingHTTPServer((address, port), Hub)
httpd.socket = default.wrap_socket(httpd.socket, server_side=True)
with open(os.path.join(folder, "port.new"), "w") as out:
    out.write(str(httpd.socket.getsockname()[1]))
os.rename(os.path.join(folder, "port.new"), os.path.join(folder, "port"))
httpd.serve_forever()
PYTHON
hub=$!
echo "$hub" > "$server/pid"
# Ready when it accepts connections, and it is this server that does.
for _ in $(seq 1 100); do
  if ! kill -0 "$hub" 2>/dev/null; then
    break
  fi
  if [ -f "$server/port" ] && python3 -c "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)" "$bind_address" "$(cat "$server/port")" 2>/dev/null; then
    echo "hub-$release serves https://$HUB_HOST on $bind_address:$(cat "$server/port")"
    exit 0
  fi
  sleep 0.1
done
echo "hub-$release did not start serving on $bind_address: $(cat "$server/log")" >&2
exit 1
