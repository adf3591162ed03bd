"""The documentation runs: every ```python block of README.md and docs/*.md, the README's length, its links.

Each ```python block is one test, named ``file:line`` (the line of its opening fence). The blocks of one file
run in order in one namespace, fresh for that file, so a block may use the names an earlier block of the same
page defined (the page says so where it does); running one block alone first runs the blocks before it.
A block whose fence is preceded by the line ``<!-- slow -->`` is marked ``slow``. Output and sketches that
cannot run are fenced as ```text (or ```bash for commands) and are not run.
"""

from __future__ import annotations

import os
import pathlib
import re
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 200
SLOW_TAG = "<!-- slow -->"
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")


def doc_files() -> list[pathlib.Path]:
    """README.md, then docs/*.md in name order: the files whose Python blocks run."""
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def linked_files() -> list[pathlib.Path]:
    """The files whose relative links must resolve: the runnable ones and the results READMEs."""
    return [*doc_files(), *sorted((ROOT / "experiments" / "results").glob("*/README.md"))]


def python_blocks(path: pathlib.Path) -> list[tuple[int, str, bool]]:
    """(line of the opening fence, source, slow) for every ```python block of ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, lang = match.groups()
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i].removeprefix(indent))
            i += 1
        i += 1  # the closing fence
        if lang == "python":
            previous = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            blocks.append((start + 1, "\n".join(body) + "\n", previous == SLOW_TAG))
    return blocks


def _relative(path: pathlib.Path) -> str:
    return path.relative_to(ROOT).as_posix()


BLOCKS = [(path, line, source, slow) for path in doc_files() for line, source, slow in python_blocks(path)]


def _params():
    for path, line, _source, slow in BLOCKS:
        marks = [pytest.mark.slow] if slow else []
        yield pytest.param(path, line, id=f"{_relative(path)}:{line}", marks=marks)


class _Page:
    """One namespace per file; ``run_through(line)`` runs every block of the file up to ``line`` once, in order."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.namespace: dict = {"__name__": f"docs:{_relative(path)}"}
        self.done: dict[int, BaseException | None] = {}

    def run_through(self, line: int) -> None:
        for block_line, source, _ in python_blocks(self.path):
            if block_line not in self.done:
                code = compile(source, f"{_relative(self.path)}:{block_line}", "exec")
                try:
                    exec(code, self.namespace)
                except BaseException as error:  # recorded; re-raised by its own test, reported by later ones
                    self.done[block_line] = error
                    if block_line == line:
                        raise
                else:
                    self.done[block_line] = None
            if block_line == line:
                return
            if self.done[block_line] is not None:
                pytest.fail(
                    f"an earlier block of this page failed ({_relative(self.path)}:{block_line}: "
                    f"{type(self.done[block_line]).__name__}: {self.done[block_line]})"
                )


_PAGES: dict[pathlib.Path, _Page] = {}


@pytest.fixture(scope="module")
def docs_workdir():
    """The blocks run in a temporary working directory, so that run folders they write do not land in the tree."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="gendl-docs-") as folder:
        os.chdir(folder)
        try:
            yield pathlib.Path(folder)
        finally:
            os.chdir(previous)


@pytest.mark.parametrize(("path", "line"), list(_params()))
def test_python_block_runs(path, line, docs_workdir):
    page = _PAGES.setdefault(path, _Page(path))
    page.run_through(line)


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; keep it at most {README_MAX_LINES} (move detail to docs/)"


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, target) of every relative Markdown link or image of ``path``, outside fenced blocks."""
    out, fence = [], None
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = FENCE.match(text)
        if match:
            fence = None if fence and text.strip().startswith(fence) else (fence or match.group(2))
            continue
        if fence:
            continue
        for target in LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue
            out.append((number, target))
    return out


def heading_anchors(path: pathlib.Path) -> set[str]:
    """GitHub's anchors of the Markdown headings of ``path``: lower case, punctuation dropped, spaces to hyphens."""
    anchors, seen, fence = set(), {}, None
    for text in path.read_text(encoding="utf-8").splitlines():
        match = FENCE.match(text)
        if match:
            fence = None if fence and text.strip().startswith(fence) else (fence or match.group(2))
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", text)
        if fence or not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


@pytest.mark.parametrize("path", linked_files(), ids=_relative)
def test_relative_links_resolve(path):
    problems = []
    for line, target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part) if file_part else path
        if not linked.exists():
            problems.append(f"{_relative(path)}:{line}: {target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
            problems.append(f"{_relative(path)}:{line}: {target} (no heading with that anchor)")
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_blocks_are_found():
    # A guard against a parser that silently finds nothing: the README has its example.
    assert any(path == README for path, *_ in BLOCKS), "README.md has no ```python block"
