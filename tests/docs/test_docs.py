"""The documentation runs as written: every ```python block of a tutorial or model-family page is
executed, page by page (the blocks of one page in order, in one fresh interpreter, in a scratch
directory), and must finish without error. A block whose first line is ``# not run: <why>`` is
shown but skipped (for what needs MNIST or hours). Also: the site builds in strict mode."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(
    [*DOCS.glob("tutorials/*.md"), *DOCS.glob("models/*.md"), DOCS / "getting-started.md"]
)
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks(page: Path) -> list[str]:
    found = FENCE.findall(page.read_text())
    return [b for b in found if not b.lstrip().startswith("# not run:")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_runs_as_written(page, tmp_path):
    code = blocks(page)
    assert code, f"{page} has no runnable python block"
    script = tmp_path / "page.py"
    script.write_text("\n".join(code))
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_site_builds_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (the docs extra)")
    figures = subprocess.run(
        [sys.executable, str(DOCS / "figures.py")], capture_output=True, text=True, cwd=ROOT
    )
    assert figures.returncode == 0, figures.stderr[-2000:]
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "site" / "api" / "samplers" / "index.html").exists()
