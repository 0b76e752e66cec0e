#!/usr/bin/env bash
# Fetch a pix2pix dataset into datasets/NAME/ with train/val(/test) image lists.
#
#   bash download_facades_dataset.sh [NAME] [--from PATH]
#
# The work is done by download_facades_dataset.py, which takes the same arguments
# and needs no bash (Windows: python download_facades_dataset.py).
set -euo pipefail

here=$(dirname "$0")
for python in python3 python; do
    # Try it first: "python" may be Python 2, and on Windows "python3" may be
    # the Microsoft Store stub that only says how to install Python.
    if "$python" -c 'import sys; sys.exit(sys.version_info < (3, 8))' >/dev/null 2>&1; then
        # exec, so that Ctrl-C and kill reach Python, which cleans up
        exec "$python" "$here/download_facades_dataset.py" "$@"
    fi
done
echo "error: no Python 3.8 or newer found (tried python3, python); install it to fetch a dataset" >&2
exit 1
