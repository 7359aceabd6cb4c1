"""The README and docs/ stay true: generated tables verbatim, links that resolve, and every
test count they state equal to what pytest collects (docs/testing.md, "Test counts")."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CHANGELOG = ROOT / "CHANGELOG.md"
DOCS = ROOT / "docs"
START, END = "<!-- args-table -->", "<!-- /args-table -->"
README_MAX_LINES = 330  # 250 after the issue-20 split, then the lighting options (issue 21, ~70 lines)


def documents() -> list[Path]:
    return [README, CHANGELOG, *sorted(DOCS.glob("*.md"))]


def test_readme_args_table_is_generated() -> None:
    from lib_iclight.args import markdown_table

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
                   "hr_additional_modules", "--ic-light-dir", "docs/verified-on.md"):
        assert needle in text, needle
    assert re.search(r"^## Tests$", text, re.MULTILINE)
    verified = (DOCS / "verified-on.md").read_text(encoding="utf-8")
    assert re.search(r"^## Verified on$", verified, re.MULTILINE)


def test_readme_axes_table_is_generated() -> None:
    from lib_iclight.axes import markdown_table as axes_table

    text = README.read_text(encoding="utf-8")
    start, end = "<!-- axes-table -->", "<!-- /axes-table -->"
    assert text.count(start) == 1 and text.count(end) == 1
    between = text.split(start, 1)[1].split(end, 1)[0]
    assert between.strip("\n") == axes_table(), "README axes table is stale; regenerate it from lib_iclight.axes.markdown_table()"


def test_readme_is_for_users() -> None:
    text = README.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; developer material goes to docs/"
    for doc in [CHANGELOG, *DOCS.glob("*.md")]:
        assert f"]({doc.relative_to(ROOT).as_posix()}" in text, f"the README does not link {doc.name}"
    for path in documents():
        if path.name == "layout.md":  # the one page that maps the folders
            continue
        assert "lib_iclight/" not in path.read_text(encoding="utf-8"), (
            f"{path.name} names a module by its folder; name the file only (docs/layout.md maps the folders)"
        )


# -- links ------------------------------------------------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_slug(heading: str) -> str:
    text = re.sub(r"[`*_]|<[^>]*>", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The heading anchors GitHub makes: a repeated heading's slug gets -1, -2 ..."""
    found: set[str] = set()
    times: dict[str, int] = {}
    for line in strip_code(path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            slug = github_slug(match.group(1))
            times[slug] = times.get(slug, -1) + 1
            found.add(f"{slug}-{times[slug]}" if times[slug] else slug)
    return found


def strip_code(text: str) -> str:
    """The text with fenced code blocks blanked, line numbers kept (an example is no marker)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return "\n".join(lines)


@pytest.mark.parametrize("path", documents(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_between_the_documents_resolve(path: Path) -> None:
    for target in LINK.findall(strip_code(path.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), f"{path.name} links {target}: no such file"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{path.name} links {target}: no such heading"


# -- test counts ------------------------------------------------------------------------------
#
# A count follows a marker on the same line:  <!-- count: SELECTOR... [@COMMIT] -->37 passed, 1 skipped
# SELECTOR: a node id or its start (a folder, a file, file::test); !SELECTOR leaves those out.
# @COMMIT: collect that commit's tests (git archive) instead of the working tree's.
# The count is the first after the marker: "N passed, M skipped, K failed" (their sum), or
# "N tests" / "all N e2e tests". A count on a line without its own marker fails the check.

MARKER = re.compile(r"<!--\s*count:(?P<spec>[^>]*?)-->")
NUMBER = r"(?<![\w.+-])\d+"  # a whole number, not the end of 1.1e-6 or SD15
OUTCOMES = rf"{NUMBER} (?:passed|skipped|failed|xfailed|xpassed|errors?)\b"
COUNT = re.compile(rf"(?P<outcomes>{OUTCOMES}(?:, {OUTCOMES})*)|(?P<tests>{NUMBER})(?: [\w/.`'-]+){{0,2}} tests?\b")


class Stated(NamedTuple):
    where: str  # file:line
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    commit: str | None
    count: int
    text: str


def stated_counts() -> Iterator[Stated | str]:
    """Every marked count, and (as a message) every count without a marker."""
    for path in documents():
        lines = strip_code(path.read_text(encoding="utf-8")).splitlines()
        for number, line in enumerate(lines, 1):
            where = f"{path.relative_to(ROOT).as_posix()}:{number}"
            pieces = MARKER.split(line)  # text, spec, text, spec, text ...
            if COUNT.search(pieces[0]):
                yield f"{where}: a test count without a count marker: {COUNT.search(pieces[0]).group(0)!r}"
            for spec, text in zip(pieces[1::2], pieces[2::2]):
                found = list(COUNT.finditer(text))
                if not found:
                    yield f"{where}: a count marker with no count after it: {spec.strip()!r}"
                    continue
                for extra in found[1:]:
                    yield f"{where}: a second test count after one marker: {extra.group(0)!r}"
                first = found[0]
                if first.group("outcomes"):  # 37 passed, 1 skipped: the run collected their sum
                    count = sum(int(n) for n in re.findall(r"\d+", first.group("outcomes")))
                else:
                    count = int(first.group("tests"))
                words = shlex.split(spec)
                commits = [w[1:] for w in words if w.startswith("@")]
                selectors = [w for w in words if not w.startswith("@")]
                yield Stated(where, tuple(s for s in selectors if not s.startswith("!")),
                             tuple(s[1:] for s in selectors if s.startswith("!")),
                             commits[0] if commits else None, count, first.group(0))


def selected(node: str, selector: str) -> bool:
    selector = selector.rstrip("/")
    return node == selector or any(node.startswith(selector + sep) for sep in ("/", "::", "["))


# One Python collects every tree in turn (the working tree and each commit's), so torch, which
# the tests import, is imported once: a collection per process costs seconds each. Between
# trees it forgets the modules and sys.path entries of the trees, as a fresh process would.
COLLECT = r"""
import contextlib, io, json, os, sys
import pytest

jobs = json.loads(sys.argv[1])
trees = tuple({path for tree, _ in jobs for path in (os.path.abspath(tree), os.path.realpath(tree))})
prefixes = tuple(tree + os.sep for tree in trees)

def inside(path):
    return bool(path) and (path.startswith(prefixes) or path in trees)

def forget_the_trees():
    for name, module in list(sys.modules.items()):
        if inside(getattr(module, "__file__", None)):
            del sys.modules[name]
    sys.path[:] = [entry for entry in sys.path if not inside(entry)]

class Collector:
    def __init__(self):
        self.ids, self.errors = [], []
    def pytest_collectreport(self, report):
        if report.failed:
            self.errors.append(f"{report.nodeid}: {report.longreprtext.strip().splitlines()[-1]}")
    def pytest_collection_finish(self, session):
        self.ids = [item.nodeid for item in session.items]

results = []
for tree, paths in jobs:
    forget_the_trees()
    os.chdir(tree)
    collector = Collector()
    with contextlib.redirect_stdout(io.StringIO()):
        code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "--assert=plain",
                            "--rootdir", tree, *paths], plugins=[collector])
    results.append({"code": int(code), "ids": collector.ids, "errors": collector.errors})
print("COLLECTED " + json.dumps(results))
"""


def tree_of(commit: str, tmp: Path) -> Path | str:
    """The commit's files under tmp, or why not (no git, a shallow clone)."""
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit],
                                 capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"git archive {commit}: {error}"
    if archive.returncode != 0:
        shallow = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--is-shallow-repository"],
                                 capture_output=True, text=True, check=False).stdout.strip()
        if shallow == "false":  # the whole history is here: the docs name a commit that is not
            pytest.fail(f"the docs name commit {commit}, which this repository does not have")
        return f"commit {commit} is not in this clone: {archive.stderr.decode(errors='replace').strip()}"
    tree = tmp / commit
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as files:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        files.extractall(tree, **safe)  # a git archive of this repository
    return tree


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> dict[str | None, set[str] | str]:
    """Node ids pytest collects, per commit (None: the working tree), or why they could not be."""
    claims = [s for s in stated_counts() if isinstance(s, Stated)]
    tmp = tmp_path_factory.mktemp("commits")
    results: dict[str | None, set[str] | str] = {}
    jobs: dict[str | None, tuple[str, list[str]]] = {}
    for commit in sorted({c.commit for c in claims}, key=str):
        paths = sorted({s.split("::")[0] for c in claims if c.commit == commit for s in c.include})
        tree = ROOT if commit is None else tree_of(commit, tmp)
        if isinstance(tree, str):
            results[commit] = tree
        else:
            jobs[commit] = (str(tree), paths)
    if not jobs:
        return results
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEBUI_", "PYTEST_"))}
    done = subprocess.run([sys.executable, "-c", COLLECT, json.dumps(list(jobs.values()))], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("COLLECTED ")]
    if not lines:
        return {**results, **{c: f"the collection failed: {done.stderr.strip()[-1000:]}" for c in jobs}}
    for commit, result in zip(jobs, json.loads(lines[-1][len("COLLECTED "):])):
        if result["code"] not in (0, 5):  # 5: nothing collected
            where = commit or "the working tree"
            results[commit] = f"collection at {where} failed ({result['code']}): " + "; ".join(result["errors"])
        else:
            results[commit] = set(result["ids"])
    return results


def test_every_test_count_in_the_docs_has_a_marker() -> None:
    problems = [s for s in stated_counts() if isinstance(s, str)]
    assert not problems, "\n".join(problems)


def test_every_stated_test_count_is_what_pytest_collects(collected: dict[str | None, set[str] | str]) -> None:
    claims = [s for s in stated_counts() if isinstance(s, Stated)]
    assert claims, "the docs state no test count at all: the check would check nothing"
    wrong, skipped = [], []
    for claim in claims:
        nodes = collected[claim.commit]
        if isinstance(nodes, str):
            skipped.append(f"{claim.where}: {nodes}")
            continue
        count = sum(1 for node in nodes if any(selected(node, s) for s in claim.include)
                    and not any(selected(node, s) for s in claim.exclude))
        if count != claim.count:
            at = f" at {claim.commit}" if claim.commit else ""
            wrong.append(f"{claim.where}: {claim.text!r} adds up to {claim.count}, pytest collects {count}{at}")
    assert not wrong, "\n".join(wrong)
    if skipped:
        pytest.skip("some counts could not be checked:\n" + "\n".join(skipped))
