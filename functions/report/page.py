"""The HTML report: one self-contained file (inline CSS, charts as inline base64 PNG, no
script, nothing fetched), rendered by Jinja2 from templates/report.html.j2 with autoescaping,
so every value from the data is text. The same PNGs are written beside it
(NAME_files/*.png) for slides and tickets."""
from __future__ import annotations

import base64
import struct
from datetime import datetime
from pathlib import Path

from jinja2 import Environment, PackageLoader

from functions.report import charts
from functions.report.collect import ReportData


def _num(value) -> str:
    return "–" if value is None else f"{int(value):,}"


def _ms(value) -> str:
    return "–" if value is None else (f"{value:,.0f} ms" if value >= 100 else f"{value:,.1f} ms")


def _bytes(value) -> str:
    if value is None:
        return "–"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return ""


def _when(value) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    return struct.unpack(">II", png[16:24])


def _chart(png: bytes) -> dict:
    width, height = (round(v * charts.SHOWN_DPI / charts.DPI) for v in png_size(png))
    return {"width": width, "height": height, "base64": base64.b64encode(png).decode()}


def render_charts(data: ReportData) -> dict[str, bytes]:
    out = {}
    if data.labels:
        out["labels"] = charts.labels_chart(data.labels)
    if data.errors:
        out["errors"] = charts.errors_chart(data.errors)
    if data.latency:
        out["latency"] = charts.latency_chart(data.latency, data.latency_unit)
    if any(data.scores):
        out["scores"] = charts.scores_chart(data.scores, data.threshold)
    return out


def _cards(data: ReportData) -> list[dict]:
    t = data.totals
    results = int(t.get("results") or 0)
    share = (lambda n: f"{100.0 * n / results:.1f} % of results") if results else (lambda n: "")
    ok, bad = int(t.get("ok") or 0), int(t.get("errors") or 0)
    lat = data.latency_overall
    dup = data.duplicate_totals
    cards = [("Results", _num(results), f"{_num(t.get('models'))} model(s)", ""),
             ("Images", _num(t.get("images")), "distinct gs:// URIs", ""),
             ("OK", _num(ok), share(ok), "ok"),
             ("Errors", _num(bad), share(bad), "bad" if bad else ""),
             ("Latency p50", _ms(lat.get("p50_ms")),
              f"p95 {_ms(lat.get('p95_ms'))} · p99 {_ms(lat.get('p99_ms'))}", ""),
             ("Duplicates", _num(dup.get("hashes") or 0), f"{_bytes(dup.get('wasted_bytes') or 0)} stored twice", "")]
    return [{"title": title, "value": value, "detail": detail, "kind": kind} for title, value, detail, kind in cards]


def _low_scores(data: ReportData) -> int:
    bins = len(data.scores)
    return sum(n for i, n in enumerate(data.scores) if (i + 1) / bins <= data.threshold + 1e-9)


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("functions.report", "templates"), autoescape=True,
                      extensions=["jinja2.ext.do"])
    env.filters.update(count_of=_num, size=_bytes, when=_when,
                       unit_share=lambda score: max(0.0, min(1.0, float(score))) * 100,
                       share_of=lambda n, total: f"{100.0 * n / (total or 1):.1f} %")
    return env


def html(data: ReportData, pngs: dict[str, bytes]) -> str:
    template = _environment().get_template("report.html.j2")
    return template.render(data=data, charts={name: _chart(png) for name, png in pngs.items()}, cards=_cards(data),
                           ok_total=int(data.totals.get("ok") or 0), low_scores=_low_scores(data))


def write(data: ReportData, out: Path) -> list[Path]:
    """The HTML at `out`, the charts in OUT_STEM_files/; returns every file written."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pngs = render_charts(data)
    folder = out.with_name(out.stem + "_files")
    written = []
    if pngs:
        folder.mkdir(exist_ok=True)
        for name, png in pngs.items():
            path = folder / f"{name}.png"
            path.write_bytes(png)
            written.append(path)
    out.write_text(html(data, pngs), encoding="utf-8")
    return [out, *written]
