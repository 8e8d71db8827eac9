"""The HTML report rendered by headless Chromium: its sections are in the DOM, its images load, it is not blank."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from cli_helpers import TINY
from report_fixtures import write_fixtures

from ifscope.cli import main
from ifscope.report import SECTIONS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium(*args: str, profile) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                    reason="chromium is not installed (apt-get install chromium); CI installs it and runs this test")
def test_report_in_headless_chromium(tmp_path, capsys):
    assert CHROMIUM is not None, "chromium must be installed in CI (.ci/run installs it)"
    workdir = tmp_path / "run"
    options = ["--recipe", TINY, "--workdir", str(workdir), "--rank", "8", "--iterations", "24"]
    assert main(["fit", *options]) == 0
    assert main(["top", *options, "--queries", "0-2", "-k", "4"]) == 0
    write_fixtures(workdir)
    assert main(["report", str(workdir)]) == 0
    url = (workdir / "report" / "index.html").resolve().as_uri()

    dom = chromium("--dump-dom", url, profile=tmp_path / "profile").stdout
    for sid in SECTIONS:
        assert f'<section id="{sid}" data-computed="yes">' in dom, sid
    assert "not computed" not in dom
    assert len(re.findall(r'<tr data-assumption="', dom)) == 5 and dom.count('class="verdict"') == 5
    assert dom.count('class="query"') == 3 and dom.count('class="card pro"') == 12 and dom.count('class="card opp"') == 12
    loaded = re.search(r'data-images-ok="(\d+)/(\d+)"', dom)
    assert loaded is not None and loaded[1] == loaded[2] and int(loaded[2]) == 3 + 3 * (1 + 4 + 4)  # fade, gap, spectrum; 3 queries with 4 + 4 examples

    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,2400", "--hide-scrollbars", url,
             profile=tmp_path / "profile")
    import matplotlib.image
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1200)
    ink = (pixels.mean(axis=2) < 0.9).mean()
    assert ink > 0.02 and np.unique(pixels.reshape(-1, 3).round(2), axis=0).shape[0] > 50
