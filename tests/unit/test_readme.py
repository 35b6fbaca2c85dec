"""The README stays short and every page it and docs/ link to exists; every docs page is reachable from it."""

from __future__ import annotations

from pathlib import Path

from controller.config import PROJECT_ROOT
from tests.support.markdown import relative_links

README = PROJECT_ROOT / "README.md"
PAGES = sorted((PROJECT_ROOT / "docs").glob("*.md"))


def test_the_readme_is_at_most_250_lines() -> None:
    assert len(README.read_text().splitlines()) <= 250


def test_every_relative_link_resolves_to_a_file() -> None:
    broken = [f"{page.relative_to(PROJECT_ROOT)} -> {target}"
              for page in (README, *PAGES) for target in relative_links(page.read_text())
              if target and not (page.parent / target).resolve().exists()]
    assert broken == []


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    seen: set[Path] = set()
    todo = [README.resolve()]
    while todo:
        page = todo.pop()
        if page in seen or page.suffix != ".md":
            continue
        seen.add(page)
        todo += [(page.parent / t).resolve() for t in relative_links(page.read_text()) if t]
    assert [p.name for p in PAGES if p.resolve() not in seen] == []


def test_links_are_found_and_a_broken_one_would_be_seen() -> None:
    text = "see [a](docs/a.md#x), ![img](b.png), [web](https://x.org), [anchor](#y)\n```\n[code](c.md)\n```\n"
    assert relative_links(text) == ["docs/a.md", "b.png"]
