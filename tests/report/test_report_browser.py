"""`python main.py report` as a person sees it: the CLI writes the HTML and the PNG
charts from a warehouse of real result rows; real headless Chromium renders the page
(a screenshot that must not be blank) and dumps its DOM (every section there, the
label that carries a <script> shown as text, never run); nothing outside the file is
loaded."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from functions.local.statedir import StateDir
from tests.report.data import build

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SECTIONS = ("summary", "labels", "status", "latency", "scores", "duplicates", "low-confidence")


def chromium(tmp: Path, *args) -> subprocess.CompletedProcess:
    if not CHROMIUM.exists():
        pytest.skip("chromium is missing: /usr/bin/chromium not found (`make browser` installs Debian's package)")
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         f"--user-data-dir={tmp / 'chromium-profile'}", *args],
        capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    state = StateDir(root / "state").ensure()
    build(state.warehouse)
    out = root / "out" / "report.html"
    run = subprocess.run([sys.executable, "main.py", "report", "--state-dir", str(state.root), "--out", str(out),
                          "--threshold", "0.3"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"report: {out}" in run.stdout and "240 results" in run.stdout
    return out


def test_the_report_and_its_charts_are_written_and_self_contained(report):
    charts = sorted(p.name for p in (report.parent / "report_files").glob("*.png"))
    assert charts == ["errors.png", "labels.png", "latency.png", "scores.png"]
    for name in charts:
        with Image.open(report.parent / "report_files" / name) as image:
            assert image.format == "PNG" and image.width > 600 and image.height > 200
    html = report.read_text(encoding="utf-8")
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert not re.search(r'(?:src|href)\s*=\s*"(?!data:image/png;base64,)', html), "every asset is inline"
    assert "url(" not in html and "@import" not in html
    assert html.count('src="data:image/png;base64,') == 4
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in html


def test_chromium_renders_a_non_blank_page(report, tmp_path):
    shot = tmp_path / "report.png"
    run = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri())
    assert shot.exists(), run.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        rgb = image.convert("RGB")
        assert len(rgb.getcolors(maxcolors=1 << 20) or []) > 200          # charts, text, colours: not blank
        assert max(ImageStat.Stat(rgb).stddev) > 20
        # the accent colour of the charts and cards is on screen (#4f46e5, anti-aliased nearby)
        pixels = rgb.resize((320, 500)).getdata()
        assert sum(1 for r, g, b in pixels if b > 180 and r < 120 and g < 110) > 200


def test_the_rendered_dom_has_every_section_and_the_markup_stays_text(report, tmp_path):
    run = chromium(tmp_path, "--dump-dom", report.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    for section in SECTIONS:
        assert f'<section id="{section}"' in dom, section
    assert "<title>bucketeye report</title>" in dom                     # the label's script did not run
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom   # ... it is shown, as text
    assert dom.count("<script") == 0
    for text in ("Labels", "Status and errors", "Latency", "Scores", "Duplicates", "Low confidence",
                 "tabby", "fetch_failed", "gs://photos/2026/"):
        assert text in dom, text
    assert dom.count('<img class="chart"') == 4


def test_a_warehouse_without_results_still_gives_a_report(tmp_path):
    from functions.report import page
    from functions.report.collect import collect
    from functions.report.sources import DuckDBSource
    from tests.backfill.seed import seed
    seed(tmp_path / "empty.duckdb", [])
    data = collect(DuckDBSource(tmp_path / "empty.duckdb"))
    written = page.write(data, tmp_path / "empty.html")
    assert written == [tmp_path / "empty.html"]  # no charts without data
    html = written[0].read_text()
    assert "No successful results yet." in html and "No image is stored twice." in html
    assert all(f'<section id="{section}"' in html for section in SECTIONS)


def test_the_model_filter_and_the_threshold(tmp_path):
    from functions.report.collect import collect
    from functions.report.sources import DuckDBSource
    from tests.backfill.seed import record, seed
    seed(tmp_path / "w.duckdb", [record("gs://b/1.jpg", model_id="old@1", score=0.2, label="tabby"),
                                 record("gs://b/1.jpg", model_id="new@2", score=0.9, label="tiger cat"),
                                 record("gs://b/2.jpg", model_id="new@2", score=0.4, label="lynx"),
                                 record("gs://b/3.jpg", model_id="new@2", error="corrupt_image")])
    source = DuckDBSource(tmp_path / "w.duckdb")
    new = collect(source, model_id="new@2", threshold=0.5)
    assert (new.totals["results"], new.totals["ok"], new.totals["errors"]) == (3, 2, 1)
    assert [r["label"] for r in new.labels] == ["lynx", "tiger cat"]
    assert [r["uri"] for r in new.low_confidence] == ["gs://b/2.jpg"]
    assert sum(new.scores) == 2 and new.scores[8] == 1 and new.scores[18] == 1
    everything = collect(source, threshold=0.5)
    assert everything.totals["results"] == 4 and everything.totals["models"] == 2
    assert [r["uri"] for r in everything.low_confidence] == ["gs://b/2.jpg", "gs://b/1.jpg"]  # newest first
