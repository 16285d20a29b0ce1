#!/usr/bin/env bash
# Signs the sample request templates with the sample "other agency" key (AGENCY_B, from samples/pki),
# writing samples/requests/. Messages that fail before signatures are checked are copied unsigned.
# Rerun after `smev-adapter pki init samples/pki` (development keys; never use them in production).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SMEV_ADAPTER:-target/debug/smev-adapter}
[[ -x $bin ]] || cargo build -q
mkdir -p samples/requests
for t in samples/templates/*.xml; do
  name=$(basename "$t")
  case "$name" in
    not-well-formed.xml|dtd.xml|soap12.xml|malformed-envelope.xml|bad-message-id.xml|unsigned.xml)
      cp "$t" "samples/requests/$name" ;;
    *)
      "$bin" sign "$t" --key samples/pki/agency_b.key --cert samples/pki/agency_b.crt > "samples/requests/$name" ;;
  esac
done
# A signed request altered after signing: SignatureIsInvalid.
sed 's#<r:Number>123456</r:Number>#<r:Number>654321</r:Number>#' samples/requests/happy.xml > samples/requests/tampered.xml
echo "signed samples written to samples/requests/"
