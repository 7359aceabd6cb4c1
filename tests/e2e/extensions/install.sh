#!/usr/bin/env bash
# Install third-party WebUI extensions into a harness WebUI's extensions/ folder, from bare git
# snapshots at pinned commits (no network).
#
#   tests/e2e/extensions/install.sh [--python VENV_PY] WEBUI_DIR MIRRORS [NAME ...]
#
#   WEBUI_DIR  the WebUI checkout (e.g. $HARNESS/a1111/webui); extensions go to WEBUI_DIR/extensions/NAME
#   MIRRORS    folder of bare snapshots laid out as MIRRORS/<owner>+<name>/repo
#   NAME       sd-webui-controlnet | multidiffusion-upscaler-for-automatic1111 | sd-webui-agent-scheduler
#              | stable-diffusion-webui-distributed | adetailer
#              (short forms: controlnet, multidiffusion | tiled-diffusion, agent-scheduler, distributed);
#              none given = the first three (distributed only when named: it needs a worker WebUI,
#              see distributed_pair.sh; adetailer only when named: its install.py pip-installs
#              ultralytics, see README.md)
#   --python   the WebUI venv's python. When given, each installed extension's install.py is run
#              now, the way A1111's launch.py runs it at start (cwd WEBUI_DIR, PYTHONPATH=WEBUI_DIR),
#              and for sd-webui-controlnet `pip install numpy==1.26.2 mediapipe==0.10.14
#              opencv-python-headless==4.11.0.86` follows (its requirements pull numpy 2, which breaks
#              scikit-image, and opencv-python-headless 5.x, which needs numpy 2 and makes IC Light's
#              install.py fail).
#              Without it the WebUI runs install.py at its next start and the numpy fix is yours.
#
# Re-runnable: an extension already at its pinned commit with a clean tree is left alone; one at
# another commit (or with local changes) is checked out again at the pin from the snapshot.
set -euo pipefail

usage() { sed -n '2,24p' "$0" >&2; exit 2; }
PY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY=${2:?--python needs a path}; shift 2 ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) echo "install.sh: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || usage
WEBUI=$(cd "$1" && pwd); MIRRORS=$(cd "$2" && pwd); shift 2
[ -d "$WEBUI/extensions" ] || { echo "install.sh: $WEBUI/extensions is missing (not a WebUI folder?)" >&2; exit 1; }
[ -z "$PY" ] || [ -x "$PY" ] || { echo "install.sh: $PY is not executable" >&2; exit 1; }
# absolute (installers run from inside WEBUI_DIR); not resolved through symlinks, to keep the venv's python
[ -z "$PY" ] || PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"

# name  <owner>+<repo> mirror  pinned commit (prefix; resolved in the snapshot)
DEFAULT="sd-webui-controlnet multidiffusion-upscaler-for-automatic1111 sd-webui-agent-scheduler"
PINS="sd-webui-controlnet Mikubill+sd-webui-controlnet 56cec5b2
multidiffusion-upscaler-for-automatic1111 pkuliyi2015+multidiffusion-upscaler-for-automatic1111 22798f6
sd-webui-agent-scheduler ArtVentureX+sd-webui-agent-scheduler a337533
stable-diffusion-webui-distributed papuSpartan+stable-diffusion-webui-distributed 8fd65eb
adetailer Bing-su+adetailer 36189cb"

BRANCH=pinned   # local branch the pinned commit is checked out on

canon() {
  case "$1" in
    controlnet|sd-webui-controlnet) echo sd-webui-controlnet ;;
    multidiffusion|tiled-diffusion|multidiffusion-upscaler-for-automatic1111) echo multidiffusion-upscaler-for-automatic1111 ;;
    agent-scheduler|sd-webui-agent-scheduler) echo sd-webui-agent-scheduler ;;
    distributed|stable-diffusion-webui-distributed) echo stable-diffusion-webui-distributed ;;
    adetailer) echo adetailer ;;
    *) echo "install.sh: unknown extension '$1'" >&2; exit 2 ;;
  esac
}
if [ $# -eq 0 ]; then set -- $DEFAULT; fi
NAMES=(); for n in "$@"; do NAMES+=("$(canon "$n")"); done

say() { echo "== extensions/install.sh: $*"; }

install_one() {  # name mirror prefix
  local name=$1 mirror=$2 prefix=$3 src dst commit
  src="$MIRRORS/$mirror/repo"; dst="$WEBUI/extensions/$name"
  [ -d "$src" ] || { echo "install.sh: no snapshot $src (fetch github:${mirror/+//})" >&2; return 1; }
  commit=$(git --git-dir="$src" rev-parse --verify -q "$prefix^{commit}") \
    || { echo "install.sh: $prefix is not a commit in $src" >&2; return 1; }
  if [ -e "$dst" ] && [ ! -d "$dst/.git" ]; then
    echo "install.sh: $dst exists and is not a git clone; move it away first" >&2; return 1
  fi
  if [ -d "$dst/.git" ] && [ "$(git -C "$dst" rev-parse HEAD 2>/dev/null)" = "$commit" ] \
     && [ "$(git -C "$dst" symbolic-ref -q HEAD)" = "refs/heads/$BRANCH" ] \
     && [ -z "$(git -C "$dst" status --porcelain --untracked-files=no)" ]; then
    say "$name already at $commit"
    return 0
  fi
  if [ ! -d "$dst/.git" ]; then
    git clone -q --no-checkout "$src" "$dst"
  else
    git -C "$dst" remote set-url origin "$src"
    git -C "$dst" fetch -q origin
  fi
  # -f: after clone --no-checkout HEAD may already be at the commit with nothing checked out;
  # also drops local edits to tracked files on a refresh (untracked files, e.g. configs, stay).
  # -B: a local branch, not a detached HEAD: A1111's extension list reads repo.active_branch with
  # GitPython, which raises on a detached HEAD ("Failed reading extension data from Git repository").
  git -C "$dst" checkout -q -f -B "$BRANCH" "$commit"
  [ "$(git -C "$dst" rev-parse HEAD)" = "$commit" ] || { echo "install.sh: $dst is not at $commit" >&2; return 1; }
  say "$name at $commit ($(git -C "$dst" log -1 --format='%cs %s' | cut -c1-70))"
}

run_installer() {  # name: as modules/launch_utils.py run_extension_installer does
  local dir="$WEBUI/extensions/$1"
  [ -f "$dir/install.py" ] || return 0
  say "running $1/install.py with $PY"
  # PIP_RETRIES=0: ControlNet's install.py pip-installs four wheels from GitHub release URLs, which
  # cannot be reached here; with pip's default 5 retries that costs ~32 s, with none ~2 s.
  (cd "$WEBUI" && PIP_RETRIES="${PIP_RETRIES:-0}" PYTHONPATH="$WEBUI${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$dir/install.py")
}

for name in "${NAMES[@]}"; do
  line=$(echo "$PINS" | awk -v n="$name" '$1 == n')
  # shellcheck disable=SC2086
  install_one $line
done

if [ -n "$PY" ]; then
  for name in "${NAMES[@]}"; do
    run_installer "$name"
    if [ "$name" = sd-webui-controlnet ]; then
      # opencv-python-headless: its requirements (albumentations / controlnet_aux) pull 5.x, which
      # requires numpy>=2; with it in place IC Light's install.py (numpy held at 1.26.2) fails with
      # ResolutionImpossible and rembg is never installed. 4.11.0.86 = A1111's opencv-python.
      say "numpy 1.26.2 + mediapipe 0.10.14 + opencv-python-headless 4.11.0.86 (scikit-image, IC Light need numpy 1.x)"
      "$PY" -m pip install -q "numpy==1.26.2" "mediapipe==0.10.14" "opencv-python-headless==4.11.0.86"
      # mediapipe 0.10.14 brings protobuf 4.x; A1111 pins protobuf==3.20.0 in requirements_versions.txt
      # and would reinstall it at the next start ("Installing requirements"). Put the WebUI's pin
      # back now (mediapipe still imports with it; pip check then names mediapipe/onnxruntime).
      pb=$(sed -n 's/^protobuf==\([0-9.]*\).*/\1/p' "$WEBUI/requirements_versions.txt" 2>/dev/null | head -1)
      if [ -n "$pb" ]; then
        say "protobuf back to the WebUI's pin $pb"
        "$PY" -m pip install -q --no-deps "protobuf==$pb"
      fi
    fi
  done
  "$PY" -c "import numpy, skimage, torchvision; print('numpy', numpy.__version__, 'skimage', skimage.__version__, 'torchvision', torchvision.__version__)" \
    || echo "install.sh: WARNING: numpy/skimage/torchvision no longer import in $PY (torchvision reinstalled? re-run the harness's torchvision_cpu_stub.sh)" >&2
  "$PY" -m pip check || echo "install.sh: WARNING: pip check reports broken requirements (see above)" >&2
fi
say "done: ${NAMES[*]}"
