"""The report in a real browser: Debian's Chromium opens it from disk, headless."""

import os
import shutil
import subprocess

import numpy as np
import pytest
from fabricate import fabricate_runs
from matplotlib.image import imread

from bench.report import build_report
from bench.suite import Suite

CHROMIUM = os.environ.get("OPTBENCH_TEST_CHROMIUM") or shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]  # fmt: skip


@pytest.mark.skipif(not CHROMIUM, reason="set OPTBENCH_TEST_CHROMIUM (.ci/chromium.sh installs Chromium)")
def test_report_opens_in_chromium_without_errors_and_the_leaderboard_is_not_blank(tmp_path):
    path = tmp_path / "browser.toml"
    path.write_text(
        '[suite]\nname = "browser"\nseeds = [0, 1, 2]\ntarget = 1.6\n[base]\nmodel = "tiny"\nsteps = 200\n'
        'eval_interval = 50\nschedule = "constant"\n[axes]\noptimizer = ["adamw", "lion", "sgd"]\n'
    )
    storage = str(tmp_path / "r.journal")
    fabricate_runs(Suite.load(path), storage, status=lambda i: "complete")
    report = build_report(Suite.load(path), storage, tmp_path / "browser.html", sample=False)
    shot, dom = chromium_check(tmp_path, report)
    assert 'id="T_leaderboard"' in dom and "Best: optimizer=" in dom
    pixels = imread(shot)[:, :, :3]
    assert pixels.shape[0] >= 800 and pixels.std() > 0.05  # text, table colours and lines: not a blank page
    # the leaderboard's gradient cells are drawn: some strongly coloured pixels (red or green)
    colour = np.abs(pixels[:, :, 0] - pixels[:, :, 1])
    assert (colour > 0.3).mean() > 0.001


def chromium_check(tmp_path, report, height=900) -> tuple:
    """Screenshot and DOM of a report in headless Chromium; asserts no console errors."""
    shot = tmp_path / f"{report.stem}.png"
    run = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile-shot'}", f"--window-size=1200,{height}",
         f"--screenshot={shot}", f"file://{report}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot.is_file(), run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Failed to load resource" in line]
    assert console == [], console
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", f"file://{report}"],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    return shot, dom


@pytest.mark.skipif(not CHROMIUM, reason="set OPTBENCH_TEST_CHROMIUM (.ci/chromium.sh installs Chromium)")
@pytest.mark.parametrize("case", range(3))
def test_the_matrix_corner_suites_open_in_chromium(tmp_path, capsys, case):
    import test_suite_matrix as matrix

    s = matrix.CORNERS[case]
    matrix.check_suite(tmp_path, capsys, s)
    _, dom = chromium_check(tmp_path, tmp_path / "matrix.html")
    assert 'id="T_leaderboard"' in dom and dom.count("<section") == 13
    assert "<script>alert(1)</script>" not in dom and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


@pytest.mark.skipif(not CHROMIUM, reason="set OPTBENCH_TEST_CHROMIUM (.ci/chromium.sh installs Chromium)")
def test_the_forty_arm_report_renders_in_chromium(tmp_path):
    from test_report import forty_arm_report

    report = forty_arm_report(tmp_path)
    shot, dom = chromium_check(tmp_path, report, height=2400)
    assert dom.count("<img") >= 9 and "Best: " in dom
    pixels = imread(shot)[:, :, :3]
    assert pixels.shape[1] == 1200 and pixels.std() > 0.05
    # nothing wider than the page: the text sample wraps, figures scale down (no horizontal overflow)
    assert "overflow-wrap: anywhere" in report.read_text()


WIDTHS = ("<style>.tabs > .panel { display: block !important; }</style>"  # a hidden tab's figure, laid out too
          "<script>window.addEventListener('load', () => document.body.setAttribute('data-widths', "
          "JSON.stringify([...document.images].map(i => [i.naturalWidth, i.getBoundingClientRect().width]))));"
          "</script>")  # fmt: skip


def rendered_widths(tmp_path, report) -> list[tuple[int, float]]:
    """(natural, drawn) width in CSS pixels of every image of the report, in document order, as Chromium lays
    the page out in a 1200-pixel window (a copy of the report with a script that reads them)."""
    import html
    import json
    import re

    probe = tmp_path / f"{report.stem}.probe.html"
    probe.write_text(report.read_text().replace("</body>", WIDTHS + "</body>"))
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile-widths'}", "--window-size=1200,900",
         "--dump-dom", f"file://{probe}"], capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    return [tuple(w) for w in json.loads(html.unescape(re.search(r'data-widths="([^"]*)"', dom).group(1)))]


@pytest.mark.skipif(not CHROMIUM, reason="set OPTBENCH_TEST_CHROMIUM (.ci/chromium.sh installs Chromium)")
@pytest.mark.parametrize("kind", ["forty arms", "search"])
def test_every_figures_text_is_at_least_9_pixels_as_chromium_draws_it(tmp_path, monkeypatch, kind):
    """A figure wider than the page is scaled down, its text with it (tick labels of about 7 px in a search
    report). Each figure's smallest text, in points at the figure's DPI, times the scale Chromium draws the
    image at, must be 9 CSS pixels or more."""
    import re

    import matplotlib.text
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from bench.report import figures

    smallest: dict[str, float] = {}
    real = figures.png

    def keep(fig):
        FigureCanvasAgg(fig).draw() if fig.canvas is None else fig.canvas.draw()
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
        uri = real(fig)
        smallest[uri] = min(t.get_fontsize() for t in texts) * figures.DPI / 72  # pixels at the PNG's scale
        return uri

    monkeypatch.setattr(figures, "png", keep)
    if kind == "forty arms":
        from test_report import forty_arm_report

        report = forty_arm_report(tmp_path)
    else:
        from fabricate import fabricate_search
        from test_conclusions import SEARCH

        path = tmp_path / "srch.toml"
        path.write_text(SEARCH)
        fabricate_search(Suite.load(path), str(tmp_path / "s.journal"), trials=60, pruned=lambda i: i % 5 == 1)
        report = build_report(Suite.load(path), str(tmp_path / "s.journal"), tmp_path / "srch.html", sample=False)
    sources = re.findall(r'<img alt="[^"]*" src="([^"]+)"', report.read_text())
    widths = rendered_widths(tmp_path, report)
    assert len(sources) == len(widths) >= 6 and set(sources) <= set(smallest)
    for uri, (natural, drawn) in zip(sources, widths, strict=True):
        assert natural > 0 and drawn > 0
        assert smallest[uri] * drawn / natural >= 9, (smallest[uri], natural, drawn)
