"""The layers' boundaries: the core (``lib_iclight/*.py``) is IC-Light alone.

It imports no Gradio, no web framework, no WebUI module (``modules``, Forge 2's ``backend``,
``ldm_patched``, ``modules_forge``) and neither the WebUI layer (``lib_iclight.webui``) nor
the backends (``lib_iclight.backends``). The backends do not import the WebUI layer either.
Checked twice: on the source (every import statement, also inside functions) and by
importing every core module in a fresh interpreter and looking at what got loaded.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "lib_iclight"
CORE = sorted(path for path in PACKAGE.glob("*.py"))
BACKENDS = sorted((PACKAGE / "backends").glob("*.py"))
WEBUI_TOP = ("gradio", "fastapi", "starlette", "modules", "backend", "ldm_patched", "modules_forge")
CORE_FORBIDDEN = (*WEBUI_TOP, "lib_iclight.webui", "lib_iclight.backends")


def imported_names(path: Path) -> list[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.append(module)
            names.extend(f"{module}.{alias.name}" for alias in node.names)  # from pkg import submodule
    return names


def offending(names: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted({n for n in names for f in forbidden if n == f or n.startswith(f + ".")})


def test_the_layers_have_their_modules():
    assert {p.name for p in CORE} >= {"args.py", "conditioning.py", "images.py", "lightmaps.py", "weights.py"}
    assert (PACKAGE / "webui" / "controller.py").exists() and (PACKAGE / "backends" / "unet_patch.py").exists()


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_the_core_imports_no_webui_gradio_or_other_layer(path: Path):
    assert offending(imported_names(path), CORE_FORBIDDEN) == []


@pytest.mark.parametrize("path", BACKENDS, ids=lambda p: p.name)
def test_the_backends_do_not_import_the_webui_layer(path: Path):
    assert offending(imported_names(path), ("lib_iclight.webui", "gradio", "fastapi", "starlette")) == []


def test_the_checker_sees_relative_and_nested_imports(tmp_path):
    source = PACKAGE / "probe_for_boundaries.py"
    try:
        source.write_text("def f():\n    from .webui import ui\n    import gradio\nfrom .backends.a1111 import x\n")
        assert offending(imported_names(source), CORE_FORBIDDEN) == [
            "gradio", "lib_iclight.backends.a1111", "lib_iclight.backends.a1111.x", "lib_iclight.webui",
            "lib_iclight.webui.ui"]
    finally:
        source.unlink()


def test_importing_the_whole_core_loads_nothing_of_the_other_layers():
    modules = [f"lib_iclight.{p.stem}" for p in CORE if p.stem != "__init__"]
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True,
                            check=True, timeout=300)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert offending(loaded, CORE_FORBIDDEN) == []
