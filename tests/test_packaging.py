"""
The source distribution carries what the README, the guides and ``provider.yaml`` point a reader at:
``docs/`` (with the screenshots the pages show), the changelog, the figures, the example DAGs and the
locks; its metadata carries ``[project.urls]``.

The sdist is built by setuptools (the project's build backend) from a copy of the tracked files, so
the checkout is left as it was.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile

import pytest

from tests.readme_check import ROOT


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> tarfile.TarFile:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know the tracked files")
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    source = tmp_path_factory.mktemp("source")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    for name in ("CHANGELOG.md", "MANIFEST.in"):  # new files count before their first commit too
        shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-c", f"import setuptools.build_meta as b; b.build_sdist({str(out)!r})"],
        cwd=source,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    (archive,) = out.glob("*.tar.gz")
    return tarfile.open(archive)


def members(sdist: tarfile.TarFile) -> set[str]:
    """Paths inside the sdist, without its top folder."""
    return {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}


def test_the_docs_and_what_they_show_are_shipped(sdist: tarfile.TarFile) -> None:
    shipped = members(sdist)
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages <= shipped, sorted(pages - shipped)
    for page in pages:  # every relative link of a shipped page resolves inside the sdist
        text = (ROOT / page).read_text(encoding="utf-8")
        for target in re.findall(r"\]\((?!https?:|#)([^)#\s]+)", text):
            resolved = (ROOT / page).parent.joinpath(target).resolve().relative_to(ROOT).as_posix()
            assert resolved in shipped or any(s.startswith(resolved + "/") for s in shipped), (page, target)
    assert {"CHANGELOG.md", "README.md", "BENCHMARKS.md", "RELIABILITY.md"} <= shipped
    assert {"constraints/airflow-3.txt", "constraints/airflow-2.txt"} <= shipped
    assert {f"example_dags/{p.name}" for p in (ROOT / "example_dags").glob("*.py")} <= shipped


def test_provider_yaml_how_to_guides_are_in_the_sdist(sdist: tarfile.TarFile) -> None:
    from airflow_provider_runcomfy import get_provider_info

    (integration,) = get_provider_info()["integrations"]
    guides = {guide.lstrip("/") for guide in integration["how-to-guide"]}
    assert guides
    assert guides <= members(sdist)


def test_project_urls_are_in_the_metadata(sdist: tarfile.TarFile) -> None:
    (pkg_info,) = [m for m in sdist.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")]
    handle = sdist.extractfile(pkg_info)
    assert handle is not None
    metadata = handle.read().decode()
    urls = re.findall(r"^Project-URL: (.+?), (\S+)$", metadata, re.MULTILINE)
    assert urls, "no [project.urls] in the metadata"
    assert all(url.startswith("https://") for _, url in urls)


def test_the_changelog_keeps_its_form() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog\n")
    assert "## [Unreleased]" in text
    versions = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d\d-\d\d)$", text, re.MULTILINE)
    from airflow_provider_runcomfy import __version__

    assert (__version__, versions[0][1]) in versions, "the package's version has its entry"
    headings = set(re.findall(r"^### (\w+)$", text, re.MULTILINE))
    assert headings <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
