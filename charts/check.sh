#!/usr/bin/env bash
# Checks the Helm chart, the CRDs' example resources and the Dockerfile, offline (see
# charts/check.py for what is checked). The tools live in a Python virtualenv built from
# charts/requirements.txt on first use (needs PyPI once; afterwards no network):
#   ${VROUTER_CHART_VENV:-${CARGO_TARGET_DIR:-target}/chart-venv}
# Usage: bash charts/check.sh [--tools-only]   (--tools-only: build the virtualenv and stop)
#   VROUTER_OPERATOR=<path to vrouter-operator>: also check that it accepts the chart's flags.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
SECONDS=0

target="${CARGO_TARGET_DIR:-$root/target}"
venv="${VROUTER_CHART_VENV:-$target/chart-venv}"
requirements="$root/charts/requirements.txt"
stamp="$venv/.vrouter-requirements"

# A Python >= 3.10 (helm-python-sdk's floor).
find_python() {
    local p
    for p in python3.13 python3.12 python3.11 python3.10 python3; do
        if command -v "$p" >/dev/null 2>&1 &&
            "$p" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
            command -v "$p"
            return 0
        fi
    done
    echo "charts/check.sh: needs Python >= 3.10 (python3 is $(python3 --version 2>&1 || echo missing))" >&2
    return 1
}

want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
    "$venv/bin/python" -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null; then
    echo "== tools: $venv (cached)"
else
    echo "== tools: building $venv from charts/requirements.txt"
    python="$(find_python)"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    if ! "$python" -m venv "$venv"; then
        echo "charts/check.sh: '$python -m venv' failed; on Debian install python3-venv" >&2
        exit 1
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --only-binary=:all: --requirement "$requirements"
    # Written last: an interrupted install is rebuilt next time.
    echo "$want" >"$stamp"
    echo "   installed in ${SECONDS}s"
fi

if [ "${1:-}" = "--tools-only" ]; then
    exit 0
fi

export PATH="$venv/bin:$PATH"
status=0
"$venv/bin/python" "$root/charts/check.py" || status=$?
echo "== charts/check.sh: ${SECONDS}s in all, exit $status"
exit "$status"
