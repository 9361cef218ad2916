"""The documentation lives in the repository, and every written map agrees with the code.

- Every file that the README, the pages under docs/, a docstring or comment of the package,
  the tests or the benchmarks, an experiment, a gin fragment or the Makefile names exists in
  the repository: a repository path such as ``docs/facts/darts_rnn.md`` or
  ``sharpdarts/reference/paper_tables.csv``, any ``*.md`` file, a relative markdown link.
  Every markdown link to a heading finds that heading. A failure names file:line.
- No such file cites the working notes kept outside the repository.
- The README stays a short map, and its map of the layers, like the one in docs/layout.md,
  says what tests/test_layers.py enforces.
- The README and docs/ name Python modules by their layered paths only.

Each checker is also run on a made-up file, so that it is known to catch what it is for.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest
from test_layers import ALLOWED, BASE  # tests/test_layers.py: the rules the imports obey

ROOT = Path(__file__).resolve().parents[1]

# Top-level entries of the repository: a path that starts with one of them is a path in it.
ROOTED = ("docs", "sharpdarts", "tests", "benchmarks", "experiments", "gin", ".ci")
# Paths that are not in a checkout but are made later, named in the docs as where things go:
# the genotypes a user promotes, and the folder that `pip install .` ships experiments in.
NOT_IN_A_CHECKOUT = {"experiments/genotypes.json", "sharpdarts/_shipped"}

# A repository path, or any *.md file name, where a path starts (so a `docs/` or `gin/`
# inside a longer path, like a user's project folder, is not read as the repository's).
_PATH = re.compile(
    r"(?<![\w./$%-])((?:"
    + "|".join(re.escape(name) for name in ROOTED)
    + r")/[\w./-]*|[\w./-]*\w\.md\b)"
)
# Characters after which a path is a pattern (a glob, a placeholder), not one file.
_PATTERN_NEXT = set("*<{[$%")
# The working notes outside the repository, spelt so that this file does not match itself.
_NOTES = re.compile(
    r"\bD[E]SIGN\.md|\bF[A]CTS\w*|\bD[A]RTS_PROTOCOL|\bF[A]MILY_PROTOCOLS"
    r"|/w[o]rk/"
)
# A markdown link or image: [text](target) or ![alt](target).
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# A dotted name in the package, e.g. sharpdarts.nn.models.NetworkCIFAR (not a file name such as
# docs/facts/sharpdarts.md).
_DOTTED = re.compile(r"(?<![\w./-])sharpdarts(?:\.[A-Za-z_]\w*)+")
_FILE_SUFFIXES = {"md", "py", "csv", "json", "gin", "txt", "svg", "png", "gif"}
# A line of a layer map: `engine -> nn, core`.
_MAP_LINE = re.compile(r"^\s*(\w+)\s*->\s*(.*?)\s*$")


def documented_files() -> list[Path]:
    """Every file whose text may cite another file of the repository."""
    files = [ROOT / "README.md", ROOT / "Makefile"]
    files += sorted((ROOT / "docs").rglob("*.md")) + sorted((ROOT / "docs").rglob("*.py"))
    for folder in ("sharpdarts", "tests", "benchmarks"):
        files += sorted((ROOT / folder).rglob("*.py"))
    files += sorted((ROOT / "benchmarks").rglob("*.md"))
    files += sorted((ROOT / "benchmarks").glob("*.sh"))
    for folder in ("experiments", "gin"):
        files += sorted((ROOT / folder).rglob("*.gin"))
    return [f for f in files if "__pycache__" not in f.parts]


def prose_lines(path: Path, text: str) -> list[tuple[int, str]]:
    """The lines of a file that may cite files: a Python file's comments and string
    statements (docstrings), every line of any other file. A Python string used as a value
    (a package-relative data path, say) is code, checked by the code's own tests."""
    lines = text.splitlines()
    if path.suffix != ".py":
        return list(enumerate(lines, start=1))
    found = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            found.append((token.start[0], token.string))
    for node in ast.walk(ast.parse(text)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            found += [(n, lines[n - 1]) for n in range(node.lineno, node.end_lineno + 1)]
    return sorted(found)


def cited_paths(line: str) -> list[str]:
    """The repository paths and markdown files one line names. A path followed by a pattern
    character (``experiments/<table>/<row>.gin``, ``docs/img/*.svg``) stands for its folder."""
    paths = []
    for match in _PATH.finditer(line):
        path = match.group(1)
        following = line[match.end() : match.end() + 1]
        if following in _PATTERN_NEXT:
            path = path[: path.rfind("/") + 1]
        paths.append(path.rstrip(".-") or path)
    return paths


def _exists(path: str, citing: Path) -> bool:
    path = path.rstrip("/")
    if path in NOT_IN_A_CHECKOUT:
        return True
    return (ROOT / path).exists() or (citing.parent / path).exists()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*$", text, re.M)}


def broken_links(path: Path, text: str) -> list[str]:
    """Relative markdown links of one page whose file or heading is missing."""
    wrong = []
    in_code = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        for target in _LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                wrong.append(f"{path.relative_to(ROOT)}:{number}: no file {target}")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                wrong.append(f"{path.relative_to(ROOT)}:{number}: no heading {target}")
    return wrong


def missing_citations(path: Path, text: str) -> list[str]:
    wrong = []
    for number, line in prose_lines(path, text):
        # A link's text may name the page it links to; its target is what is checked.
        line = re.sub(r"\[[^\]]*\]\(", "(", line)
        for cited in cited_paths(line):
            if not _exists(cited, path):
                wrong.append(f"{path.relative_to(ROOT)}:{number}: {cited}")
    return wrong


def notes_cited(path: Path, text: str) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{number}: {match.group(0)}"
        for number, line in enumerate(text.splitlines(), start=1)
        for match in _NOTES.finditer(line)
    ]


def _module_file(dotted: list[str]) -> Path | None:
    base = ROOT.joinpath(*dotted)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def unknown_modules(path: Path, text: str) -> list[str]:
    """Dotted package names whose module does not exist, or whose first attribute the module
    does not define: an old flat path such as ``sharpdarts.models`` is caught here."""
    wrong = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _DOTTED.finditer(line):
            parts = match.group(0).split(".")
            if parts[-1] in _FILE_SUFFIXES:
                continue
            depth = max(n for n in range(1, len(parts) + 1) if _module_file(parts[:n]))
            module = _module_file(parts[:depth])
            if depth < len(parts) and not _defines(module, parts[depth]):
                wrong.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)}")
    return wrong


def _defines(module: Path, name: str) -> bool:
    source = module.read_text(encoding="utf-8")
    n = re.escape(name)
    pattern = rf"^\s*(?:def|class)\s+{n}\b|^{n}\s*[:=]|\bimport\b.*\b{n}\b|\b{n}\s*="
    return re.search(pattern, source, re.M) is not None


# --------------------------------------------------------------------------- the repository
FILES = documented_files()
# The README and the pages under docs/ (benchmarks/README.md is checked for modules too).
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


def _all(check, files) -> list[str]:
    return [problem for path in files for problem in check(path, path.read_text(encoding="utf-8"))]


def test_every_cited_file_exists():
    wrong = _all(missing_citations, FILES)
    assert not wrong, "cited files that are not in the repository:\n" + "\n".join(wrong)


def test_no_working_notes_are_cited():
    wrong = _all(notes_cited, FILES)
    assert not wrong, (
        "these notes are not in the repository; cite the page under docs/ "
        "that says the thing:\n" + "\n".join(wrong)
    )


def test_markdown_links_resolve():
    wrong = _all(broken_links, PAGES + [ROOT / "benchmarks" / "README.md"])
    assert not wrong, "\n".join(wrong)


def test_docs_name_modules_by_their_layered_paths():
    wrong = _all(unknown_modules, PAGES + [ROOT / "benchmarks" / "README.md"])
    assert not wrong, "no such module or name:\n" + "\n".join(wrong)


def test_the_scan_covers_every_kind_of_file():
    names = {f.relative_to(ROOT).as_posix() for f in FILES}
    for expected in (
        "README.md",
        "Makefile",
        "docs/layout.md",
        "sharpdarts/face/cli.py",
        "tests/test_layers.py",
        "benchmarks/README.md",
        "benchmarks/common.py",
        "experiments/ptb/darts_v2.gin",
        "gin/protocols/search.gin",
    ):
        assert expected in names, expected


def test_the_readme_is_a_short_map():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 250, f"README.md has {len(lines)} lines: move a topic to docs/"
    text = "\n".join(lines)
    for command in ("make demo", "make test"):
        assert command in text
    linked = {target.partition("#")[0] for target in _LINK.findall(text)}
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert not pages - linked, f"pages under docs/ that the README does not link: {pages - linked}"


# --------------------------------------------------------------------------- layer maps
def layer_map(text: str) -> dict[str, set[str]]:
    """The layer map written as the fenced block that follows the ``<!-- layer map -->``
    marker: lines ``layer -> imported, layers`` (``-> nothing`` for none), each layer's
    allowed imports besides itself and the base modules."""
    block = re.search(r"<!-- layer map -->\s*```[^\n]*\n(.*?)```", text, re.S)
    assert block, "no fenced block after a '<!-- layer map -->' marker"
    drawn = {}
    for line in block.group(1).splitlines():
        match = _MAP_LINE.match(line)
        if match:
            names = {n.strip() for n in match.group(2).split(",") if n.strip()} - {"nothing"}
            drawn[match.group(1)] = names
    return drawn


def _allowed_as_drawn() -> dict[str, set[str]]:
    """ALLOWED from tests/test_layers.py, less what every layer may import: its own modules
    and the base modules."""
    return {layer: set(targets) - {layer, BASE} for layer, targets in ALLOWED.items()}


@pytest.mark.parametrize("page", ["README.md", "docs/layout.md"])
def test_written_layer_maps_agree_with_the_layer_test(page):
    drawn = layer_map((ROOT / page).read_text(encoding="utf-8"))
    assert drawn == _allowed_as_drawn(), f"{page}'s layer map differs from tests/test_layers.py"


# --------------------------------------------------------------------------- the checkers bite
def test_the_checkers_catch_made_up_citations():
    fake = ROOT / "docs" / "made_up.md"
    notes = "D" + "ESIGN.md"
    text = (
        "See `docs/facts/no_such_page.md` and `sharpdarts/reference/no_such.csv`,\n"
        f"then {notes}; [a link](no_such_page.md), [a heading](../README.md#no-such-heading)\n"
        "and `sharpdarts.models.NetworkCIFAR` (a removed path).\n"
        "These exist: `docs/facts/darts_rnn.md`, `experiments/<table>/<row>.gin`, "
        "[the README](../README.md), `sharpdarts.nn.models.NetworkCIFAR`.\n"
    )
    assert missing_citations(fake, text) == [
        "docs/made_up.md:1: docs/facts/no_such_page.md",
        "docs/made_up.md:1: sharpdarts/reference/no_such.csv",
        f"docs/made_up.md:2: {notes}",
        "docs/made_up.md:2: no_such_page.md",
    ]
    assert notes_cited(fake, text) == [f"docs/made_up.md:2: {notes}"]
    assert broken_links(fake, text) == [
        "docs/made_up.md:2: no file no_such_page.md",
        "docs/made_up.md:2: no heading ../README.md#no-such-heading",
    ]
    assert unknown_modules(fake, text) == ["docs/made_up.md:3: sharpdarts.models.NetworkCIFAR"]


def test_python_code_strings_are_not_citations_but_docstrings_are():
    fake = ROOT / "sharpdarts" / "made_up.py"
    text = (
        '"""Facts: docs/facts/gone.md."""\n'
        'DATA = "reference/paper_tables.csv"  # see sharpdarts/reference/gone.csv\n'
    )
    assert missing_citations(fake, text) == [
        "sharpdarts/made_up.py:1: docs/facts/gone.md",
        "sharpdarts/made_up.py:2: sharpdarts/reference/gone.csv",
    ]


def test_a_wrong_layer_map_is_caught():
    right = (
        "<!-- layer map -->\n```\nface -> engine, store, nn, core\nengine -> nn, core\n"
        "store -> core\nnn -> core\ncore -> nothing\nbase -> nothing\n```\n"
    )
    assert layer_map(right) == _allowed_as_drawn()
    wrong = right.replace("store -> core", "store -> nn, core")
    assert layer_map(wrong)["store"] == {"nn", "core"}
    assert layer_map(wrong) != _allowed_as_drawn()
