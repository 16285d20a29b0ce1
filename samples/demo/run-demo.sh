#!/usr/bin/env bash
# The two-agency demo in one command: a gateway simulator and two agency nodes on this machine.
# Agency A (MFC_01) asks agency B (AGENCY_B) who holds passport 4510 123456; B answers from its own
# database, signed; A verifies the answer and prints it. Everything is stopped on exit.
#
#   samples/demo/run-demo.sh            # from anywhere; files go to ./data/demo in the repository
#
# Environment: DEMO_DIR (work folder, wiped first), SMEV_ADAPTER_BIN (use this binary instead of building),
# DEMO_GATEWAY_PORT / DEMO_A_PORT / DEMO_B_PORT / DEMO_A_API_PORT (17576 / 17575 / 17577 / 17581),
# DEMO_KEEP=1 (keep the processes running until Ctrl-C, to try the API, the drop folder and /control).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DEMO="${DEMO_DIR:-$REPO/data/demo}"
GATEWAY_PORT="${DEMO_GATEWAY_PORT:-17576}"
A_PORT="${DEMO_A_PORT:-17575}"
B_PORT="${DEMO_B_PORT:-17577}"
A_API_PORT="${DEMO_A_API_PORT:-17581}"

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'run-demo: %s\n' "$*" >&2; exit 1; }

# 1. The binary: build it unless one is given (cargo does nothing when it is up to date).
if [[ -n "${SMEV_ADAPTER_BIN:-}" ]]; then
    BIN="$SMEV_ADAPTER_BIN"
else
    step "Building smev-adapter (cargo build --release)"
    (cd "$REPO" && cargo build --release --quiet --bin smev-adapter)
    BIN="$REPO/target/release/smev-adapter"
fi
[[ -x "$BIN" ]] || die "no executable at $BIN"
command -v curl >/dev/null || die "curl is needed (apt-get install curl)"

for port in "$GATEWAY_PORT" "$A_PORT" "$B_PORT" "$A_API_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port is taken; set DEMO_GATEWAY_PORT, DEMO_A_PORT, DEMO_B_PORT or DEMO_A_API_PORT"
    fi
done

PIDS=()
STOPPED=""
cleanup() {
    local status=$?
    [[ -n "$STOPPED" ]] && status=0
    if ((${#PIDS[@]})); then
        echo
        echo "==> Stopping the gateway and the nodes"
        kill "${PIDS[@]}" 2>/dev/null || true
        wait "${PIDS[@]}" 2>/dev/null || true
        echo "Stopped. Configs, keys, stores and logs stay in $DEMO."
    fi
    if ((status != 0)) && [[ -d "$DEMO/logs" ]]; then
        echo "run-demo: failed; the last log lines of each process ($DEMO/logs):" >&2
        tail -n 5 "$DEMO"/logs/*.log >&2 || true
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'STOPPED=1; exit 130' INT TERM

# 2. A fresh work folder, a development PKI (one CA, a key and certificate per agency, CN = mnemonic).
step "Creating a development PKI and the configs in $DEMO"
rm -rf "$DEMO"
mkdir -p "$DEMO/logs"
"$BIN" pki init "$DEMO/pki" --node MFC_01 --agencies AGENCY_B

# 3. The configs, from the templates next to this script.
fill() {
    sed -e "s|@REPO@|$REPO|g" -e "s|@DEMO@|$DEMO|g" -e "s|@GATEWAY_PORT@|$GATEWAY_PORT|g" \
        -e "s|@A_PORT@|$A_PORT|g" -e "s|@B_PORT@|$B_PORT|g" -e "s|@A_API_PORT@|$A_API_PORT|g" \
        "$HERE/$1.in" >"$DEMO/$1"
}
fill gateway.toml
fill mfc_01.toml
fill agency_b.toml
"$BIN" --config "$DEMO/gateway.toml" gateway --check
RUST_LOG=warn "$BIN" --config "$DEMO/mfc_01.toml" check     # also builds each agency's sample database
RUST_LOG=warn "$BIN" --config "$DEMO/agency_b.toml" check

# 4. Start the three processes, logs in $DEMO/logs; wait until each is ready.
wait_ready() { # NAME URL
    local i
    for ((i = 0; i < 600; i++)); do
        if curl -fsS -o /dev/null "$2" 2>/dev/null; then
            echo "$1 is ready ($2)"
            return 0
        fi
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null || die "a process exited early; see $DEMO/logs"
        done
        sleep 0.1
    done
    die "$1 did not become ready at $2 within 60 s"
}
step "Starting the gateway simulator and the two agency nodes"

"$BIN" --config "$DEMO/gateway.toml" gateway >"$DEMO/logs/gateway.log" 2>&1 &
PIDS+=($!)
"$BIN" --config "$DEMO/agency_b.toml" serve >"$DEMO/logs/agency_b.log" 2>&1 &
PIDS+=($!)
"$BIN" --config "$DEMO/mfc_01.toml" serve >"$DEMO/logs/mfc_01.log" 2>&1 &
PIDS+=($!)
wait_ready "gateway simulator" "http://127.0.0.1:$GATEWAY_PORT/healthz"
wait_ready "AGENCY_B (answers)" "http://127.0.0.1:$B_PORT/readyz"
wait_ready "MFC_01 (asks)" "http://127.0.0.1:$A_PORT/readyz"

# 5. A asks: the payload is wrapped in a signed SendRequest, queued, delivered through the gateway to B;
#    B checks the signature (CN = MFC_01), the exchange agreement, runs its SQL and pushes its signed answer
#    back through the gateway; A verifies it, matches it to the request and `send --wait` prints it.
step "MFC_01 asks AGENCY_B: smev-adapter --config mfc_01.toml send request.xml --to AGENCY_B --wait"
cat "$HERE/request.xml"
echo "--- the MessageID, then AGENCY_B's answer:"
ANSWER="$("$BIN" --config "$DEMO/mfc_01.toml" send "$HERE/request.xml" --to AGENCY_B --wait --timeout 60s)"
echo "$ANSWER"
ID="$(head -n 1 <<<"$ANSWER")"

step "What each side stored"
echo "--- MFC_01 (smev-adapter --config mfc_01.toml queue show $ID):"
"$BIN" --config "$DEMO/mfc_01.toml" queue show "$ID"
echo "--- AGENCY_B (smev-adapter --config agency_b.toml queue list):"
"$BIN" --config "$DEMO/agency_b.toml" queue list
echo "--- AGENCY_B's audit journal (smev-adapter --config agency_b.toml audit export), event and detail:"
"$BIN" --config "$DEMO/agency_b.toml" audit export 2>/dev/null |
    sed -E 's/.*"detail":(null|"([^"]*)"),"event":"([^"]*)".*/\3  \2/'

if [[ "${DEMO_KEEP:-}" == 1 ]]; then
    step "Still running (DEMO_KEEP=1); Ctrl-C stops everything"
    echo "gateway http://127.0.0.1:$GATEWAY_PORT/control, MFC_01 API http://127.0.0.1:$A_API_PORT/api/requests" \
        "(Bearer demo-consumer-token-change-me), drop folder $DEMO/mfc_01/exchange/outgoing/"
    wait "${PIDS[0]}"
fi
