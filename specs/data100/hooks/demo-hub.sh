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
server="$DEMO_CA_DIR/hubs/$INGRESS_IP"
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

# The marker: the hub found its home directories on the pool.
write_marker() {
  home="${DEMO_HOME_ROOT:-/export/home}/$release"
  mkdir -p "$home"
  printf '%s deployed on %s with kubeconfig %s\n' "hub-$release" "$INGRESS_IP" "$KUBECONFIG" > "$home/.hub-deployed"
}

if [ "$mode" = --activate ]; then
  # The idle release serves this hub's name on this ingress: its server runs and holds the
  # name's certificate (read from its files, which costs nothing beside the pace below).
  take_lock
  if ! [ -f "$server/$HUB_HOST.pem" ] || ! [ -f "$server/pid" ] || ! kill -0 "$(cat "$server/pid")" 2>/dev/null; then
    echo "hub-$release is not deployed on $INGRESS_IP: run demo-hub.sh $release --idle first" >&2
    exit 1
  fi
  release_lock
  # Scaling the idle release up: its pods start and mount the home directories.
  case "$release" in
    staging) pace="${DEMO_HUB_ACTIVATE_SECONDS_STAGING:-${DEMO_HUB_ACTIVATE_SECONDS:-0}}" ;;
    *) pace="${DEMO_HUB_ACTIVATE_SECONDS_PROD:-${DEMO_HUB_ACTIVATE_SECONDS:-0}}" ;;
  esac
  sleep "$pace"
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
setsid python3 - "$INGRESS_IP" "$server" > "$server/log" 2>&1 < /dev/null 9>&- <<'PYTHON' &
import http.server, os, ssl, sys
address, folder = sys.argv[1], sys.argv[2]
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
        body = b"JupyterHub (ferry demo stand-in)\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *arguments):
        pass
httpd = http.server.ThreadingHTTPServer((address, 443), Hub)
httpd.socket = default.wrap_socket(httpd.socket, server_side=True)
httpd.serve_forever()
PYTHON
hub=$!
echo "$hub" > "$server/pid"
# Ready when it accepts connections, and it is this server that does.
for _ in $(seq 1 100); do
  if ! kill -0 "$hub" 2>/dev/null; then
    break
  fi
  if python3 -c "import socket,sys; socket.create_connection((sys.argv[1], 443), 1)" "$INGRESS_IP" 2>/dev/null; then
    echo "hub-$release serves https://$HUB_HOST on $INGRESS_IP:443"
    exit 0
  fi
  sleep 0.1
done
echo "hub-$release did not start serving on $INGRESS_IP:443: $(cat "$server/log")" >&2
exit 1
