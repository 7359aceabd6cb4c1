"""Installs what the IC Light extension needs and the WebUI lacks; upgrades nothing.

Run by the WebUI (``python install.py`` with the WebUI on PYTHONPATH) at start-up and after
installing the extension. The decisions live in ``lib_iclight/install_plan.py``, where they
are tested; this file only gathers versions and runs pip.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib_iclight.install_plan import RELEVANT_DISTS, RELEVANT_MODULES, plan_installs  # noqa: E402

try:  # the WebUI's own helpers honour --skip-install and its index URL
    import launch
except ImportError:  # run outside a WebUI (e.g. by hand in a venv)
    launch = None


def installed_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in RELEVANT_DISTS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def importable_modules() -> set[str]:
    def present(module: str) -> bool:
        if launch is not None:
            return bool(launch.is_installed(module))
        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            return False

    return {module for module in RELEVANT_MODULES if present(module)}


def run_pip(args: list[str]) -> None:
    description = "IC Light requirements: " + " ".join(args[1:])
    if launch is not None:
        # launch.run_pip goes through a shell: quote each requirement ("<" and ">" in them).
        launch.run_pip(" ".join([args[0], *(f'"{arg}"' for arg in args[1:])]), description)
        return
    print(f"Installing {description}")
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def main() -> None:
    plan = plan_installs(installed_versions(), importable_modules())
    if not plan.install:
        return
    with tempfile.TemporaryDirectory(prefix="iclight-install-") as folder:
        constraints = None
        if plan.hold:
            constraints = os.path.join(folder, "held-versions.txt")
            with open(constraints, "w", encoding="utf-8") as file:
                file.write(plan.constraints_text())
        run_pip(plan.pip_args(constraints))


main()
