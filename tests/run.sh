#!/usr/bin/env bash
# The test command: builds (once) a CPU test environment, then runs the whole suite.
# The environment is cached outside the clone, keyed by the requirement files, so a
# fresh clone reuses it; delete the folder (or change a requirement) to rebuild it.
set -euo pipefail
cd "$(dirname "$0")/.."

key=$(cat tests/requirements.txt tests/requirements-nodeps.txt tests/constraints.txt | sha1sum | cut -c1-12)
venv="${ICLIGHT_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/iclight-tests/venv-$key}"

if [ ! -f "$venv/.ready" ]; then
    echo "building the test environment in $venv (first run: a few minutes)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -qq --disable-pip-version-check -r tests/requirements.txt -c tests/constraints.txt
    "$venv/bin/pip" install -qq --disable-pip-version-check --no-deps -r tests/requirements-nodeps.txt
    # rembg's first import compiles pymatting with numba (about a minute); do it once here.
    "$venv/bin/python" -c "import rembg" >/dev/null 2>&1 || true
    touch "$venv/.ready"
fi

exec "$venv/bin/python" -m pytest -q "$@"
