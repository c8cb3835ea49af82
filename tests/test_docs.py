"""The README and its docs/ pages: every relative link and #anchor resolves (the README's rows
link into docs/options.md and the other pages), and every command-line option stays listed in
the README's own Options table."""

import re
from pathlib import Path

import pytest

from portrait.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "weights").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a Markdown page's headings: lower case, punctuation dropped,
    spaces as hyphens, a repeated heading numbered -1, -2, ...; fenced code is not a heading."""
    anchors, seen, in_code = set(), {}, False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else re.match(r"#{1,6} (.*)", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def broken_links(page: Path) -> list[str]:
    """Each relative link of `page` whose file is missing or whose #anchor no heading makes."""
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page.resolve()
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and dest.suffix == ".md" and fragment not in heading_anchors(
                dest.read_text(encoding="utf-8")):
            broken.append(f"{target} (no such heading)")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_a_missing_file_or_heading_is_reported(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## `--out`\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[a](other.md#--out) [b](other.md#--in) [c](gone.md) [d](#page) "
                    "[e](#nope) [f](https://example.com/#x)\n", encoding="utf-8")
    assert broken_links(page) == ["other.md#--in (no such heading)", "gone.md (no such file)",
                                  "#nope (no such heading)"]


def test_every_option_is_in_the_readmes_options_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("| option | default | what it does |", 1)[1].split("\n\n", 1)[0]
    # Each option in a row's first cell: --image, --out, --matte, --source and --input-size are
    # also named in other rows' text, which let their own rows go unnoticed.
    names = " ".join(row.split("|")[1] for row in table.splitlines() if row.count("|") > 2)
    options = {s for a in build_parser()._actions for s in a.option_strings} - {"-h", "--help"}
    missing = sorted(o for o in options if not re.search(re.escape(o) + r"(?![\w-])", names))
    assert len(options) > 40 and missing == []
