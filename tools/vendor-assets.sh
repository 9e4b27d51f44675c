#!/usr/bin/env bash
# Re-vendor the dashboard's front-end assets from the npm registry (run by hand when upgrading;
# the files it writes are committed, so `make run`/`make test` never need the network).
#   Vazirmatn (SIL OFL 1.1) — the Persian web font: Regular and Bold woff2 + OFL.txt.
set -euo pipefail
VERSION="${VAZIRMATN_VERSION:-33.0.3}"
DEST="$(cd "$(dirname "$0")/.." && pwd)/src/zistboom/dashboard/static/fonts"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "vazirmatn@${VERSION}" >/dev/null && tar xzf "vazirmatn-${VERSION}.tgz")
mkdir -p "$DEST"
for w in Regular Bold; do
  cp "$TMP/package/fonts/webfonts/Vazirmatn-${w}.woff2" "$DEST/"
done
cp "$TMP/package/OFL.txt" "$DEST/OFL.txt"
echo "vazirmatn@${VERSION}" > "$DEST/VERSION"
ls -l "$DEST"
