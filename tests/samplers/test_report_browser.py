"""The HTML comparison report opened in a headless browser (Debian's chromium): the page loads,
its summary table lists every sampler and every plot decodes as an image.

Skipped where no chromium is installed, except when EBM_REQUIRE_BROWSER=1 (``.ci/run`` installs
chromium and sets it, so CI cannot skip this silently)."""

import os
import re
import shutil
import subprocess

import pytest

import samplers
from tests.helpers import random_rbm

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
]


def test_report_renders_in_a_headless_browser(tmp_path):
    if BROWSER is None:
        if os.environ.get("EBM_REQUIRE_BROWSER") == "1":
            pytest.fail("EBM_REQUIRE_BROWSER=1 but no chromium is installed")
        pytest.skip("no chromium installed (apt-get install chromium)")
    model = random_rbm(5, 3, scale=1.0, seed=0)
    result = samplers.compare(
        model,
        [samplers.BlockGibbs, samplers.Metropolis],
        num_chains=4,
        sweeps=500,
        progress=False,
    )
    page = result.report(tmp_path / "report.html")
    dom = subprocess.run(
        [BROWSER, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body is not None, dom.stdout[:2000]
    # set by the page's script once every image has decoded with a non-zero width
    assert 'data-images="ok"' in body.group(1), body.group(1)
    assert 'data-image-count="4"' in body.group(1), body.group(1)
    table = re.search(r"<table id=\"summary\">(.*?)</table>", dom.stdout, re.S).group(1)
    assert "BlockGibbs" in table and "Metropolis" in table
