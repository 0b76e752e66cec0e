#!/usr/bin/env bash
# Render a results gallery (RESULTS_DIR/index.html, written by train.py) in headless
# Chromium and save what a browser shows as a PNG, to check the page by eye or in CI.
#
#   bash scripts/screenshot_gallery.sh train_results gallery.png
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 RESULTS_DIR OUT.png" >&2
    exit 2
fi
page="$1/index.html"
if [ ! -f "$page" ]; then
    echo "error: $page not found (train.py writes it at its first save epoch)" >&2
    exit 2
fi
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    echo "error: chromium not found (Debian/Ubuntu: apt-get install chromium)" >&2
    exit 2
fi
# a file:// URL with spaces and other odd characters percent-encoded
url=$(python3 -c 'import pathlib, sys; print(pathlib.Path(sys.argv[1]).resolve().as_uri())' "$page")
out=$(realpath -m "$2")
profile=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$profile" "$log"' EXIT
rm -f "$out"
# a throwaway profile and no background traffic: the page is all it loads
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --screenshot="$out" --window-size=1200,900 "$url" >"$log" 2>&1 || true
if [ ! -s "$out" ]; then
    echo "error: chromium wrote no screenshot; its output:" >&2
    cat "$log" >&2
    exit 1
fi
echo "wrote $out"
