#!/usr/bin/env bash
# The test command. Builds (once) two CPU test environments and runs:
#   1. the whole suite under the A1111 stack (Gradio 3.41, pydantic 1);
#   2. the UI, API-route, script and browser tests again under the Forge 2 stack (Gradio 4.40,
#      pydantic 2).
# The browser tests (tests/browser) need Chromium: .ci/run installs Debian's; without one they skip.
# Environments are cached outside the clone, keyed by their requirement files, so a fresh
# clone reuses them; delete ~/.cache/iclight-tests (or change a requirement) to rebuild.
# ICLIGHT_SKIP_GRADIO4=1 skips the second pass. Extra arguments go to the first pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/iclight-tests"

ensure_env() {  # ensure_env <requirements file> <constraints file or ""> -> prints the venv path
    local requirements=$1 constraints=$2 key venv
    key=$(cat "$requirements" tests/requirements-nodeps.txt ${constraints:+"$constraints"} | sha1sum | cut -c1-12)
    venv="$cache/venv-$key"
    if [ ! -f "$venv/.ready" ]; then
        echo "building the test environment $venv from $requirements (first run: a few minutes)" >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -qq --disable-pip-version-check -r "$requirements" ${constraints:+-c "$constraints"} >&2
        "$venv/bin/pip" install -qq --disable-pip-version-check --no-deps -r tests/requirements-nodeps.txt >&2
        # rembg's first import compiles pymatting with numba (about a minute); do it once here.
        "$venv/bin/python" -c "import rembg" >/dev/null 2>&1 || true
        touch "$venv/.ready"
    fi
    echo "$venv"
}

main_env=$(ensure_env tests/requirements.txt tests/constraints.txt)
"$main_env/bin/python" -m pytest -q "$@"

if [ "${ICLIGHT_SKIP_GRADIO4:-0}" != "1" ]; then
    g4_env=$(ensure_env tests/requirements-gradio4.txt "")
    echo "== Gradio 4 / pydantic 2 (Forge 2 stack): UI, API routes, script and browser tests"
    "$g4_env/bin/python" -m pytest -q tests/webui tests/script tests/browser
fi
