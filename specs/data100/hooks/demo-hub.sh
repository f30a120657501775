#!/bin/sh
# A stand-in for deploy-hub.sh that `cargo xtask demo` and the end-to-end tests use instead of
# helm (through --var hub_deployer=./hooks/demo-hub.sh): it "deploys" one hub (staging or
# prod) on a machine with no Kubernetes. It writes a marker into the hub's home directories
# (the NFS export's path, where the pool is mounted on this machine), and serves HTTPS on
# $INGRESS_IP:443 with a certificate for $HUB_HOST signed by the demo CA in $DEMO_CA_DIR, so
# that the TLS check can pass. DEMO_HUB_SECONDS_<RELEASE> models helm's pace (scaled).
# Idempotent, like helm upgrade --install: a second run replaces the server.
set -eu
release="$1"
: "${DEMO_CA_DIR:?set DEMO_CA_DIR to the demo CA folder (ca.pem, ca.key)}"
state="$DEMO_CA_DIR/hubs/$release"
mkdir -p "$state"

# The marker: the hub found its home directories on the pool.
home="${DEMO_HOME_ROOT:-/export/home}/$release"
mkdir -p "$home"
printf '%s deployed on %s with kubeconfig %s\n' "hub-$release" "$INGRESS_IP" "$KUBECONFIG" > "$home/.hub-deployed"

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
server="$DEMO_CA_DIR/hubs/$INGRESS_IP"
mkdir -p "$server"
cp "$state/certificate.pem" "$server/$HUB_HOST.pem"
cp "$state/key.pem" "$server/$HUB_HOST.key"
if [ -f "$server/pid" ]; then
  kill "$(cat "$server/pid")" 2>/dev/null || true
fi
# Detached, with its output in a file: the hook ends while the hub keeps serving.
setsid python3 - "$INGRESS_IP" "$server" > "$server/log" 2>&1 < /dev/null <<'PYTHON' &
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
echo $! > "$server/pid"
# Ready when it accepts connections.
for _ in $(seq 1 100); do
  if python3 -c "import socket,sys; socket.create_connection((sys.argv[1], 443), 1)" "$INGRESS_IP" 2>/dev/null; then
    echo "hub-$release serves https://$HUB_HOST on $INGRESS_IP:443"
    exit 0
  fi
  sleep 0.1
done
echo "hub-$release did not start serving on $INGRESS_IP:443: $(cat "$server/log")" >&2
exit 1
