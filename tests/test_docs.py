"""
The docs cannot drift from the code: every example they show is a region of an example DAG file.

In ``docs/*.md`` and the README, a fenced block right after ``<!-- example: PATH#REGION -->`` must
equal the lines between ``# [START REGION]`` and ``# [END REGION]`` in PATH (dedented), or the whole
file for ``<!-- example: PATH -->``. Relative links must point at files that exist. After editing an
example DAG, refresh the docs with ``python -m tests.test_docs --write``.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]

#: The marker, then (after blank lines) a fenced code block, whose body is group "body".
EXAMPLE = re.compile(
    r"<!-- example: (?P<path>[^#\s]+)(?:#(?P<region>[\w-]+))? -->\n\s*\n?"
    r"(?P<fence>```python\n)(?P<body>.*?)(?P<close>^```$)",
    re.DOTALL | re.MULTILINE,
)
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def region(path: str, name: str | None) -> str:
    """The lines of an example file between its START and END markers, dedented (or the whole file)."""
    file = ROOT / path
    if not file.is_file():
        raise AssertionError(f"the docs include {path}, which does not exist")
    text = file.read_text(encoding="utf-8")
    if name is None:
        return text
    found = re.search(
        rf"^[ \t]*# \[START {name}\]\n(.*?)^[ \t]*# \[END {name}\]$", text, re.DOTALL | re.MULTILINE
    )
    if found is None:
        raise AssertionError(f"{path} has no region {name!r} (# [START {name}] ... # [END {name}])")
    return textwrap.dedent(found.group(1))


def render(text: str) -> str:
    """The page with every example block replaced by the file region it names."""
    return EXAMPLE.sub(
        lambda m: m.group(0)[: m.start("body") - m.start(0)] + region(m["path"], m["region"]) + m["close"],
        text,
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_example_in_the_docs_is_the_example_file(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert render(text) == text, (
        f"{page.name} shows an example that differs from its file: run python -m tests.test_docs --write"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_at_files_that_exist(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for match in LINK.finditer(text):
        target = match["target"].split("#", 1)[0]
        if not target or re.match(r"^[a-z]+:", target):
            continue
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_every_example_dag_and_topic_is_documented() -> None:
    shown = {m["path"] for page in PAGES for m in EXAMPLE.finditer(page.read_text(encoding="utf-8"))}
    examples = {f"example_dags/{p.name}" for p in (ROOT / "example_dags").glob("*.py")}
    assert examples <= shown, f"example DAGs the docs never show: {sorted(examples - shown)}"
    topics = {"connection", "operators", "sensor", "download", "deferrable", "emulator", "cost-and-safety"}
    assert topics <= {p.stem for p in DOCS}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(f"docs/{p.name}" in readme for p in DOCS), "the README links every page"


def test_provider_yaml_lists_every_guide() -> None:
    from airflow_provider_runcomfy import get_provider_info

    (integration,) = get_provider_info()["integrations"]
    guides = integration["how-to-guide"]
    assert sorted(guides) == sorted(f"/docs/{p.name}" for p in DOCS if p.name != "index.md")
    assert all((ROOT / guide.lstrip("/")).is_file() for guide in guides)


if __name__ == "__main__" and "--write" in sys.argv:
    for page in PAGES:
        old = page.read_text(encoding="utf-8")
        new = render(old)
        if new != old:
            page.write_text(new, encoding="utf-8")
            print(f"updated {page.relative_to(ROOT)}")


def test_a_drifted_example_is_caught() -> None:
    """The check itself: an edited copy is put back to the file's region, a missing region fails."""
    shown = "<!-- example: example_dags/runcomfy_any_model.py#howto_operator_runcomfy_model -->\n```python\n"
    assert "RunComfyModelOperator(" in render(shown + "run = OldName()\n```\n")
    with pytest.raises(AssertionError, match="has no region"):
        render(shown.replace("runcomfy_model -->", "nope -->") + "x\n```\n")


def _layout_block() -> str:
    text = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1]
    return section.split("```", 2)[1]


def test_the_layout_names_every_module_of_the_package() -> None:
    """The house as documented is the house as built: each module is named, and no name is stale."""
    layout = _layout_block()
    package = ROOT / "airflow_provider_runcomfy"
    # The emulator and the pytest plugin are described as folders; every other module by its name.
    folders = {"emulator", "testing"}
    missing = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).parts
        if parts[0] in folders:
            if f"{parts[0]}/" not in layout:
                missing.append(f"{parts[0]}/")
        elif path.name != "__init__.py" and not re.search(rf"(?<![\w.]){re.escape(path.name)}\b", layout):
            missing.append("/".join(parts))
    assert not missing, f"docs/development.md's Layout does not name: {sorted(set(missing))}"
    named = set(re.findall(r"(?<![\w./])((?:[a-z_]+/)?[a-z_]+\.py)\b", layout))
    known = {p.name for p in package.rglob("*.py")} | {
        "/".join(p.relative_to(package).parts[-2:]) for p in package.rglob("*.py")
    }
    known |= {p.name for p in ROOT.glob("*/*.py")} | {p.name for p in ROOT.glob("tests/*.py")}
    stale = sorted(name for name in named if name not in known)
    assert not stale, f"docs/development.md's Layout names modules that do not exist: {stale}"
