#!/usr/bin/env bash
# The .deb, end to end on this machine: build it with cargo-deb, install it with dpkg, run the installed
# binary as the package's user (version, check, doctor, a short serve answering the example request),
# remove it (user, data and conffiles stay), purge it (everything goes). Needs root: it installs a package.
# Outside CI a non-root run is skipped (exit 0); with CI=true it fails. Run by scripts/test.sh at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

PKG=smev-adapter
USER_NAME=smev-adapter
DATA_DIR=/var/lib/smev-adapter
CONFIG=/etc/smev-adapter/adapter.toml

if [[ $(id -u) -ne 0 ]]; then
  if [[ ${CI:-} == true ]]; then
    echo "test-deb: FAIL: must run as root in CI (it installs the package with dpkg)" >&2
    exit 1
  fi
  echo "test-deb: skipped: not root (run as root to build, install and purge the .deb)"
  exit 0
fi

step() { echo "test-deb: $*"; }
fail() {
  echo "test-deb: FAIL: $*" >&2
  exit 1
}

# This test installs and purges the package, its user and /var/lib/smev-adapter. On a machine where any of them
# already exists (a real installation, or a run killed before its cleanup) it would destroy them, so it stops,
# except in CI (a throwaway machine) or with SMEV_TEST_DEB_REPLACE=1.
existing=()
status=$(dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null || true)
[[ -n $status && $status != *not-installed* ]] && existing+=("the package $PKG ($status)")
getent passwd "$USER_NAME" >/dev/null && existing+=("the user $USER_NAME")
[[ -e $DATA_DIR ]] && existing+=("$DATA_DIR")
if ((${#existing[@]})); then
  if [[ ${CI:-} == true || ${SMEV_TEST_DEB_REPLACE:-} == 1 ]]; then
    step "removing what a previous run left: ${existing[*]}"
    dpkg --purge "$PKG" >/dev/null 2>&1 || true
    userdel "$USER_NAME" 2>/dev/null || true
    groupdel "$USER_NAME" 2>/dev/null || true
    rm -rf "$DATA_DIR"
  else
    fail "this machine already has ${existing[*]}; the test would purge it. Remove it (dpkg --purge $PKG) or set SMEV_TEST_DEB_REPLACE=1"
  fi
fi
server_pid=""
logs=$(mktemp -d)
cleanup() {
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; fi
  if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'installed\|config-files'; then
    dpkg --purge "$PKG" >/dev/null 2>&1 || true
  fi
  rm -rf "$logs"
}
trap cleanup EXIT

# ---- build ------------------------------------------------------------------------------------
if ! cargo deb --version >/dev/null 2>&1; then
  step "installing cargo-deb (once; later runs reuse it)"
  cargo install cargo-deb --locked --quiet
fi
step "cargo deb (release build)"
start=$SECONDS
rm -f target/debian/"$PKG"_*.deb target/debian/"$PKG"-dbgsym_*.ddeb
cargo deb --locked --fast >"$logs/build.log" 2>&1 || {
  cat "$logs/build.log" >&2
  fail "cargo deb failed"
}
deb=$(ls target/debian/"$PKG"_*.deb 2>/dev/null | head -n1)
[[ -f $deb ]] || fail "cargo deb made no target/debian/${PKG}_*.deb"
step "built $deb in $((SECONDS - start))s ($(($(stat -c %s "$deb") / 1024)) KiB)"
info=$(dpkg-deb --info "$deb")
[[ $info == *"Recommends: libengine-gost-openssl"* ]] || fail "the package does not recommend libengine-gost-openssl"
[[ $info =~ Depends:.*libc6 ]] || fail "the package's Depends were not computed (\$auto)"
[[ $info =~ Depends:.*adduser ]] || fail "the package does not depend on adduser"

# ---- install ----------------------------------------------------------------------------------
step "dpkg -i"
dpkg -i "$deb" >"$logs/install.log" 2>&1 || {
  cat "$logs/install.log" >&2
  fail "dpkg -i failed"
}
for f in /usr/bin/smev-adapter "$CONFIG" /etc/smev-adapter/mappings/organisation.toml \
  /usr/share/smev-adapter/wsdl/smev-adapter-1.3.wsdl /usr/share/smev-adapter/example/example.db \
  /usr/lib/systemd/system/smev-adapter.service; do
  [[ -e $f ]] || fail "$f is not installed"
done
dpkg-query -W -f='${Conffiles}\n' "$PKG" | grep -q " $CONFIG " || fail "$CONFIG is not a conffile"

WANTS=/etc/systemd/system/multi-user.target.wants/smev-adapter.service
if command -v deb-systemd-helper >/dev/null; then
  [[ -L $WANTS ]] || fail "the unit is not enabled ($WANTS missing)"
fi
getent passwd "$USER_NAME" >/dev/null || fail "postinst did not create the user $USER_NAME"
getent group "$USER_NAME" >/dev/null || fail "postinst did not create the group $USER_NAME"
owner=$(stat -c '%U:%G %a' "$DATA_DIR" 2>/dev/null) || fail "postinst did not create $DATA_DIR"
[[ $owner == "$USER_NAME:$USER_NAME 750" ]] || fail "$DATA_DIR is '$owner', expected '$USER_NAME:$USER_NAME 750'"

# Run as the service's user when runuser works here (it needs PAM); as root otherwise.
as_user=(runuser -u "$USER_NAME" --)
if ! "${as_user[@]}" true 2>/dev/null; then
  step "runuser is not usable here; running the binary as root"
  as_user=()
fi

step "smev-adapter version"
out=$("${as_user[@]}" smev-adapter version) || fail "smev-adapter version failed"
[[ $out == "smev-adapter $(dpkg-query -W -f='${Version}' "$PKG" | cut -d- -f1)" ]] || fail "version printed '$out'"

step "smev-adapter check --config $CONFIG"
"${as_user[@]}" smev-adapter check --config "$CONFIG" || fail "check fails on a fresh install"

step "smev-adapter doctor --config $CONFIG"
"${as_user[@]}" smev-adapter doctor --config "$CONFIG" || fail "doctor reports a FAIL on a fresh install"

if command -v systemd-analyze >/dev/null; then
  step "systemd-analyze verify"
  systemd-analyze verify /usr/lib/systemd/system/smev-adapter.service || fail "systemd-analyze verify"
  score=$(systemd-analyze security --offline=true /usr/lib/systemd/system/smev-adapter.service 2>/dev/null | tail -n1 || true)
  if [[ -n $score ]]; then step "systemd-analyze security: ${score#→ }"; fi
else
  step "systemd-analyze not installed: unit not verified"
fi

# The unit's command line, for a moment, as the unit's user: it must create its store in data_dir and answer.
if command -v curl >/dev/null; then
  step "serve (as $USER_NAME) and send the example request"
  log=$logs/serve.log
  # setpriv execs the node itself (runuser would stay in between and turn SIGTERM into its own exit code).
  exec_as_user=()
  if ((${#as_user[@]})) && command -v setpriv >/dev/null; then
    exec_as_user=(setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --clear-groups --)
  fi
  # What an admin does before the first start: trust a CA (here a development one) and sign a request with
  # a key it issued; the shipped config alone refuses to serve without a trust store.
  pki=$logs/pki
  smev-adapter pki init "$pki" --node CHANGE_ME --agencies EXAMPLE_CLIENT >/dev/null || fail "pki init"
  install -d -m 0750 -o root -g "$USER_NAME" /etc/smev-adapter/trust
  install -m 0644 "$pki/ca.crt" /etc/smev-adapter/trust/ca.crt
  served=/etc/smev-adapter/adapter-served.toml
  { cat "$CONFIG"; printf '\n[trust]\nca = ["/etc/smev-adapter/trust/ca.crt"]\n'; } > "$served"
  chgrp "$USER_NAME" "$served"; chmod 0640 "$served"
  smev-adapter sign /usr/share/doc/smev-adapter/examples/requests/organisation-request.xml \
    --key "$pki/example_client.key" --cert "$pki/example_client.crt" > "$logs/request.xml" || fail "sign"
  "${exec_as_user[@]}" smev-adapter serve --config "$served" --listen 127.0.0.1:0 2>"$log" &
  server_pid=$!
  addr=""
  for _ in $(seq 100); do
    addr=$(grep -o 'at http://[0-9.:]*' "$log" | head -n1 | cut -c4-) || true
    [[ -n $addr ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; fail "serve exited"; }
    sleep 0.1
  done
  [[ -n $addr ]] || { cat "$log" >&2; fail "serve did not start listening"; }
  reply=$(curl -sS -H 'Content-Type: text/xml; charset=utf-8' -H 'SOAPAction: "urn:SendRequest"' \
    --data-binary @"$logs/request.xml" "$addr/ws")
  [[ $reply == *MessageMetadata* ]] || { cat "$log" >&2; fail "the example request was not acknowledged: $reply"; }
  kill -TERM "$server_pid"
  wait "$server_pid" || fail "serve did not exit 0 on SIGTERM"
  server_pid=""
  [[ $(stat -c %U "$DATA_DIR/adapter.db" 2>/dev/null) == "$USER_NAME" ]] || fail "the store is not in $DATA_DIR owned by $USER_NAME"
  rm -rf "$served" /etc/smev-adapter/trust
else
  step "curl not installed: serve not tried"
fi

# ---- reinstall (an upgrade runs the same postinst with the old version in $2) ----------------------
step "dpkg -i again (keeps the store)"
dpkg -i "$deb" >"$logs/reinstall.log" 2>&1 || {
  cat "$logs/reinstall.log" >&2
  fail "reinstalling over the installed package failed"
}
if command -v curl >/dev/null; then
  [[ -f $DATA_DIR/adapter.db ]] || fail "reinstalling lost $DATA_DIR/adapter.db"
fi
owner=$(stat -c '%U:%G %a' "$DATA_DIR")
[[ $owner == "$USER_NAME:$USER_NAME 750" ]] || fail "after reinstall $DATA_DIR is '$owner'"

# ---- remove, then purge -----------------------------------------------------------------------
step "dpkg --remove (keeps the user, the data and the conffiles)"
dpkg --remove "$PKG" >/dev/null
[[ ! -e /usr/bin/smev-adapter ]] || fail "remove left /usr/bin/smev-adapter"
[[ -f $CONFIG ]] || fail "remove deleted the conffile $CONFIG"
[[ -d $DATA_DIR ]] || fail "remove deleted $DATA_DIR"
getent passwd "$USER_NAME" >/dev/null || fail "remove deleted the user"

step "dpkg --purge"
dpkg --purge "$PKG" >/dev/null
for f in /usr/bin/smev-adapter /etc/smev-adapter "$DATA_DIR" /usr/share/smev-adapter /usr/share/doc/smev-adapter \
  /usr/lib/systemd/system/smev-adapter.service "$WANTS"; do
  [[ ! -e $f && ! -L $f ]] || fail "purge left $f"
done
! getent passwd "$USER_NAME" >/dev/null || fail "purge left the user $USER_NAME"
! getent group "$USER_NAME" >/dev/null || fail "purge left the group $USER_NAME"
! dpkg-query -W "$PKG" >/dev/null 2>&1 || fail "dpkg still knows $PKG"
step "OK: built, installed, checked, served, removed and purged cleanly"
