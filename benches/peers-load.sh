#!/usr/bin/env bash
# The real `smev-adapter serve` under the shared peers' load client (../shared/peers/load), configured as the
# JDK peer is: same consumer certificate, node key, agency.db and query; a fresh store, synchronous=FULL.
#
#   benches/peers-load.sh [BIN]      BIN defaults to target/release/smev-adapter (build it first)
#
# Environment: C (64), D (20) as for run-load.sh; PEER_DATA (/tmp/peers-data, made by the peers' gen/gen.py:
# generate enough requests for D seconds, e.g. `gen.py --requests 200000`), PEER_BUILD (/tmp/peers-build),
# PORT (a free one), WORK (a temp folder: config, mapping, store, log). Prints the load client's figures and the
# node's CPU per request and peak RSS (VmHWM). Speeds are figures to read, never pass/fail.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$HERE/target/release/smev-adapter}
DATA=${PEER_DATA:-/tmp/peers-data}
PEERS=${PEERS:-$HERE/../shared/peers}
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
WORK=${WORK:-$(mktemp -d /tmp/smev-peers-load.XXXXXX)}
for f in consumer.crt node.key node.crt agency.db check.xml; do
    [ -s "$DATA/$f" ] || { echo "peers-load: $DATA/$f missing: run the peers' gen/gen.py first" >&2; exit 2; }
done
mkdir -p "$WORK/mappings"
rm -rf "$WORK/data"
cat >"$WORK/mappings/registration.toml" <<'EOF'
# The peers' RegistrationRequest: Series and Number are direct children; the JDK peer's query.
request = "{urn://example.gov/registration/1.0}RegistrationRequest"
datasource = "agency"
allowed_senders = ["*"]
namespaces = { r = "urn://example.gov/registration/1.0" }
max_rows = 1

[params]
series = { path = "r:Series", type = "string", pattern = "^[0-9]{4}$" }
number = { path = "r:Number", type = "string", pattern = "^[0-9]{6}$" }

[query]
sql = "SELECT last_name, first_name, address FROM registrations WHERE series = :series AND number = :number"

[response]
element = "r:RegistrationResponse"
fields = [
  { column = "last_name", element = "r:LastName" },
  { column = "first_name", element = "r:FirstName" },
  { column = "address", element = "r:Address" },
]
EOF
cat >"$WORK/adapter.toml" <<EOF
[node]
mnemonic = "PEERS_BENCH"
name = "smev-adapter under the peers' load"
reply = "sync"
[server]
listen = "127.0.0.1:$PORT"
path = "/ws"
plain_http = true
wsdl_dir = "$HERE/wsdl"
[storage]
data_dir = "$WORK/data"
synchronous = "full"
group_commit = true
[gateway]
url = "http://127.0.0.1:9/ws"
[trust]
ca = ["$DATA/consumer.crt"]
sender_from = "cn"
[keys]
private_key = "$DATA/node.key"
certificate = "$DATA/node.crt"
[mappings]
dir = "$WORK/mappings"
[datasources.agency]
kind = "sqlite"
path = "$DATA/agency.db"
EOF
"$BIN" --config "$WORK/adapter.toml" serve >"$WORK/serve.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
URL=http://127.0.0.1:$PORT/ws
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
if ! curl -s -H 'Content-Type: text/xml; charset=utf-8' --data-binary @"$DATA/check.xml" "$URL" | grep -q RegistrationResponse; then
    echo "peers-load: the node did not answer check.xml with a RegistrationResponse; log: $WORK/serve.log" >&2
    exit 1
fi
echo "smev-adapter $BIN (pid $PID) at $URL, work folder $WORK"
"$PEERS/load/run-load.sh" "$URL" "$PID"
