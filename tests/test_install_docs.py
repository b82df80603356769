"""The install commands users copy: from the repository today, from PyPI only after a release.

The repository's URL is written once, in pyproject.toml [project.urls] Repository; the README,
docs/*.md and the Colab notebook must install from exactly that URL.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from pathlib import Path

import nbformat

from jupyter_colab_tunnel import __version__

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).parent.parent
DOCS = REPO / "docs"
NOTEBOOK = DOCS / "colab_setup.ipynb"

GIT_INSTALL = re.compile(r"git\+(https?://[^\s\"'`@]+)(@[^\s\"'`]+)?")
# `pip install jupyter-colab-tunnel` from the index (not yet possible), with or without -q.
INDEX_INSTALL = re.compile(r"pip install (?:-q )?[\"']?jupyter-colab-tunnel\b(?![/\w-])")
FIRST_RELEASE = "first release"


def project_urls() -> dict[str, str]:
    with (REPO / "pyproject.toml").open("rb") as f:
        return dict(tomllib.load(f)["project"]["urls"])


def repository_url() -> str:
    return project_urls()["Repository"]


def notebook_code() -> list[str]:
    nb = nbformat.read(NOTEBOOK, as_version=nbformat.NO_CONVERT)
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def user_texts() -> dict[str, str]:
    """Everything a user reads and copies from: README, the guides, the notebook's cells."""
    texts = {"README.md": (REPO / "README.md").read_text(encoding="utf-8")}
    for page in sorted(DOCS.glob("*.md")):
        texts[f"docs/{page.name}"] = page.read_text(encoding="utf-8")
    nb = nbformat.read(NOTEBOOK, as_version=nbformat.NO_CONVERT)
    texts[f"docs/{NOTEBOOK.name}"] = "\n".join(cell.source for cell in nb.cells)
    return texts


def test_repository_url_is_written_once_in_pyproject() -> None:
    urls = project_urls()
    repo = urls["Repository"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repo), repo
    # The other project URLs are pages of the same repository, not another copy of its name.
    for name, url in urls.items():
        assert url == repo or url.startswith(repo + "/"), (name, url)


def test_docs_install_from_exactly_the_repository_url() -> None:
    repo = repository_url()
    owner_and_name = repo.removeprefix("https://github.com/")
    found: dict[str, list[str]] = {}
    wrong = []
    for where, text in user_texts().items():
        for url, _ref in GIT_INSTALL.findall(text):
            found.setdefault(where, []).append(url)
            if url != repo:
                wrong.append(f"{where}: git+{url} (pyproject.toml says {repo})")
        # A GitHub link to a repository of this name elsewhere must be the same repository.
        for other in re.findall(r"github\.com/([\w.-]+/jupyter-colab-tunnel)\b", text):
            if other != owner_and_name:
                wrong.append(f"{where}: github.com/{other} (pyproject.toml says {repo})")
    assert not wrong, wrong
    assert {"README.md", "docs/colab.md", f"docs/{NOTEBOOK.name}"} <= set(found), found


def test_colab_install_command_works_today() -> None:
    repo = repository_url()
    command = f'%pip install -q "git+{repo}"'
    # The notebook's first cell that runs anything installs from the repository.
    first = notebook_code()[0]
    runs = [line for line in first.splitlines() if line.strip() and not line.startswith("#")]
    assert runs[0] == command, first
    # And so does the guide's step 1, before any other install command.
    colab = (DOCS / "colab.md").read_text(encoding="utf-8")
    step1 = colab.split("### 1. Install", 1)[1].split("\n### ", 1)[0]
    installs = re.findall(r"^%pip install .*$", step1, re.M)
    assert installs[0] == command, installs
    # The Drive alternative's file pattern matches the wheel this version builds.
    (pattern,) = re.findall(r"/content/drive/\S+\.whl", step1)
    wheel = f"jupyter_colab_tunnel-{__version__}-py3-none-any.whl"
    assert fnmatch.fnmatch(wheel, Path(pattern).name), pattern
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f'pip install "git+{repo}"' in readme


def test_index_install_is_only_shown_for_after_the_first_release() -> None:
    unlabelled = []
    seen = 0
    for where, text in user_texts().items():
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if INDEX_INSTALL.search(line):
                seen += 1
                # The same line or the three before it say this waits for the first release.
                context = "\n".join(lines[max(0, i - 3) : i + 1])
                if FIRST_RELEASE not in context:
                    unlabelled.append(f"{where}:{i + 1}: {line.strip()}")
    assert seen >= 3  # README, docs/colab.md and the notebook keep it for later
    assert not unlabelled, unlabelled
