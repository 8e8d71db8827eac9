"""Every pointer into docs/science.md names a section it has: Markdown links ``science.md#anchor`` in README.md and
docs/, and the code's ``docs/science.md, 'Section title'`` citations."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _sections() -> dict[str, str]:
    """GitHub's anchor of each heading of docs/science.md, mapped to its title."""
    titles = re.findall(r"^#{2,3} (.+)$", (ROOT / "docs" / "science.md").read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", t.lower()).replace(" ", "-"): t for t in titles}


def test_links_into_science_md_name_its_sections():
    anchors = _sections()
    found = 0
    for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for anchor in re.findall(r"science\.md#([\w-]+)", path.read_text()):
            found += 1
            assert anchor in anchors, f"{path.name}: science.md#{anchor} is not a section ({sorted(anchors)})"
    assert found >= 5


def test_code_citations_of_science_md_name_its_sections():
    titles = set(_sections().values())
    cited = [(path, title) for path in (ROOT / "src").rglob("*.py")
             for title in re.findall(r"docs/science\.md, '([^']+)'", path.read_text())]
    assert len(cited) >= 5
    for path, title in cited:
        assert title in titles, f"{path.relative_to(ROOT)} cites docs/science.md, '{title}', which has no such section"
