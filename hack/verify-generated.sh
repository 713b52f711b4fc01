#!/usr/bin/env bash
# Regenerates the CRD, RBAC and DeepCopy code and fails if that changed any
# file, so that committed generated files always match the Go markers.
set -euo pipefail
cd "$(dirname "$0")/.."
files() { find api config dist/chart -type f \( -name 'zz_generated*.go' -o -name '*.yaml' \) 2>/dev/null | sort; }
sums() { files | xargs -r sha256sum; }
before="$(sums)"
make -s manifests generate
after="$(sums)"
if [ "$before" != "$after" ]; then
	echo "generated files were stale; 'make manifests generate' changed:" >&2
	diff <(echo "$before") <(echo "$after") >&2 || true
	echo "commit the regenerated files" >&2
	exit 1
fi
echo "generated files are current"
