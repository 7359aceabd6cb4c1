"""The README's argument table is args.markdown_table(), verbatim: it cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from lib_iclight.args import markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- args-table -->", "<!-- /args-table -->"


def test_readme_args_table_is_generated() -> None:
    text = README.read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, "the README needs exactly one pair of table markers"
    between = text.split(START, 1)[1].split(END, 1)[0]
    assert between.strip("\n") == markdown_table(), (
        "README table is stale; regenerate it from lib_iclight.args.markdown_table()"
    )


def test_readme_names_the_test_commands_and_routes() -> None:
    text = README.read_text(encoding="utf-8")
    for needle in ("bash tests/run.sh", "WEBUI_URL=http://127.0.0.1:7860 python -m pytest tests/e2e",
                   "/ic-light/v1/models", "/ic-light/v1/schema", "/ic-light/v1/version",
                   "hr_additional_modules", "--ic-light-dir", "Verified on"):
        assert needle in text, needle
    assert re.search(r"^## Tests$", text, re.MULTILINE)


def test_readme_axes_table_is_generated() -> None:
    from lib_iclight.axes import markdown_table as axes_table

    text = README.read_text(encoding="utf-8")
    start, end = "<!-- axes-table -->", "<!-- /axes-table -->"
    assert text.count(start) == 1 and text.count(end) == 1
    between = text.split(start, 1)[1].split(end, 1)[0]
    assert between.strip("\n") == axes_table(), "README axes table is stale; regenerate it from lib_iclight.axes.markdown_table()"
