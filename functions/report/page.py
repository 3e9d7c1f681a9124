"""The HTML report: one self-contained file (inline CSS, charts as inline base64 PNG, no
script, nothing fetched), every value from the data escaped. The same PNGs are written
beside it (NAME_files/*.png) for slides and tickets."""
from __future__ import annotations

import base64
import struct
from datetime import datetime
from html import escape
from pathlib import Path

from functions.report import charts
from functions.report.collect import ReportData

CSS = """
:root{--ink:#1e293b;--muted:#64748b;--line:#e2e8f0;--bg:#f8fafc;--card:#fff;--accent:#4f46e5;--ok:#059669;
--bad:#e11d48;--warn:#d97706}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"DejaVu Sans",sans-serif}
main{max-width:1120px;margin:0 auto;padding:32px 28px 48px}
header{display:flex;align-items:flex-end;justify-content:space-between;gap:16px;flex-wrap:wrap;margin-bottom:20px}
h1{font-size:26px;margin:0;letter-spacing:-.02em}
h1 .eye{color:var(--accent)}
.sub{color:var(--muted);margin:4px 0 0}
h2{font-size:17px;margin:0 0 4px}
.lead{color:var(--muted);margin:0 0 14px}
section{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:20px 22px;margin:16px 0;
box-shadow:0 1px 2px rgba(15,23,42,.04)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;background:none;border:0;
box-shadow:none;padding:0}
.card{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:14px 16px}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.06em}
.card .v{font-size:26px;font-weight:700;letter-spacing:-.02em;margin-top:2px}
.card .s{color:var(--muted);font-size:12px}
.card.ok .v{color:var(--ok)} .card.bad .v{color:var(--bad)}
.grid{display:grid;grid-template-columns:minmax(0,1.25fr) minmax(0,1fr);gap:20px;align-items:start}
@media (max-width:900px){.grid{grid-template-columns:1fr}}
img.chart{max-width:100%;height:auto;display:block;margin:0 auto}
table{width:100%;border-collapse:collapse;font-size:13px}
th{text-align:left;color:var(--muted);font-weight:600;font-size:11.5px;text-transform:uppercase;letter-spacing:.05em;
border-bottom:1px solid var(--line);padding:6px 8px}
td{border-bottom:1px solid var(--line);padding:6px 8px;vertical-align:top;overflow-wrap:anywhere}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td code{white-space:nowrap}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12px}
.score{white-space:nowrap}
.meter{display:inline-block;width:70px;height:7px;background:var(--line);border-radius:4px;margin-right:6px;
vertical-align:middle;overflow:hidden}
.meter i{display:block;height:100%;background:var(--accent)}
.meter.low i{background:var(--warn)}
.pill{display:inline-block;padding:2px 10px;border-radius:999px;font-size:12px;font-weight:600;margin:0 6px 6px 0}
.pill.ok{background:#d1fae5;color:#065f46}.pill.error{background:#ffe4e6;color:#9f1239}
.pill.other{background:var(--line);color:var(--ink)}
.empty{color:var(--muted);font-style:italic;margin:6px 0}
ul.uris{margin:0;padding-left:16px}
.alts{color:var(--muted);font-size:12px}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:24px}
"""


def e(value) -> str:
    return escape("" if value is None else str(value), quote=True)


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
    return e(value)


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    return struct.unpack(">II", png[16:24])


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    width, height = (round(v * charts.SHOWN_DPI / charts.DPI) for v in png_size(png))
    return (f'<img class="chart" alt="{e(alt)}" width="{width}" height="{height}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')


def _meter(score, threshold: float) -> str:
    if score is None:
        return "–"
    width = max(0.0, min(1.0, float(score))) * 100
    low = " low" if score < threshold else ""
    meter = f'<span class="meter{low}"><i style="width:{width:.0f}%"></i></span>'
    return f'<span class="score">{meter}{float(score):.3f}</span>'


def _section(ident: str, title: str, lead: str, body: str) -> str:
    return f'<section id="{ident}"><h2>{e(title)}</h2><p class="lead">{lead}</p>{body}</section>'


def _table(head: list[tuple[str, bool]], rows: list[list[str]]) -> str:
    ths = "".join(f'<th class="n">{e(h)}</th>' if numeric else f"<th>{e(h)}</th>" for h, numeric in head)
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if head[i][1] else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{ths}</tr></thead><tbody>{body}</tbody></table>"


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


def _cards(data: ReportData) -> str:
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
    return '<section id="summary" class="cards">' + "".join(
        f'<div class="card {cls}"><div class="k">{e(k)}</div><div class="v">{v}</div><div class="s">{e(s)}</div></div>'
        for k, v, s, cls in cards) + "</section>"


def _labels(data: ReportData, png) -> str:
    if not data.labels:
        return _section("labels", "Labels", "What the images show.", '<p class="empty">No successful results yet.</p>')
    ok = int(data.totals.get("ok") or 0) or 1
    rows = [[e(r["label"]), _num(r["images"]), f"{100.0 * r['images'] / ok:.1f} %",
             _meter(r["mean_score"], data.threshold)] for r in data.labels]
    table = _table([("top label", False), ("images", True), ("share", True), ("mean score", False)], rows)
    return _section("labels", "Labels", f"The {len(data.labels)} most frequent top-1 labels of successful results.",
                    f'<div class="grid"><div>{_img(png, "Images per top label")}</div><div>{table}</div></div>')


def _status(data: ReportData, png) -> str:
    pills = "".join(f'<span class="pill {e(r["status"]) if r["status"] in ("ok", "error") else "other"}">'
                    f'{e(r["status"])}: {_num(r["results"])}</span>' for r in data.status)
    if data.errors:
        rows = [[f'<code>{e(r["error_code"])}</code>', "yes" if r.get("error_retryable") else "no",
                 _num(r["results"]), _when(r.get("last_at"))] for r in data.errors]
        table = _table([("error code", False), ("retryable", False), ("results", True), ("last seen", False)], rows)
        body = f'<p>{pills}</p><div class="grid"><div>{_img(png, "Errors by code")}</div><div>{table}</div></div>'
    else:
        body = f'<p>{pills}</p><p class="empty">No errors.</p>'
    return _section("status", "Status and errors",
                    "Permanent errors point at the images, retryable ones at the service.", body)


def _latency(data: ReportData, png) -> str:
    if not data.latency:
        return _section("latency", "Latency", "", '<p class="empty">No timings yet.</p>')
    return _section("latency", "Latency", f"p50 and p95 of <code>timings_ms.total</code> per {e(data.latency_unit)} "
                    "(fetch, decode, queue and inference of one image).", _img(png, "Latency over time"))


def _scores(data: ReportData, png) -> str:
    if not any(data.scores):
        return _section("scores", "Scores", "", '<p class="empty">No scores yet.</p>')
    low = sum(n for i, n in enumerate(data.scores) if (i + 1) / len(data.scores) <= data.threshold + 1e-9)
    return _section("scores", "Scores", f"How sure the model is: the top-1 score of each successful result. "
                    f"{_num(low)} images score below {data.threshold:g}.", _img(png, "Top-1 score distribution"))


def _duplicates(data: ReportData) -> str:
    if not data.duplicates:
        return _section("duplicates", "Duplicates", "Images stored more than once (same MD5 under several URIs).",
                        '<p class="empty">No image is stored twice.</p>')
    rows = []
    for r in data.duplicates:
        uris = list(r.get("uris") or [])
        shown = "".join(f"<li class=\"mono\">{e(u)}</li>" for u in uris[:6])
        more = f"<li>… and {len(uris) - 6} more</li>" if len(uris) > 6 else ""
        rows.append([f'<code>{e(r["content_md5"])}</code>', _num(r["copies"]), _bytes(r.get("wasted_bytes")),
                     f'<ul class="uris">{shown}{more}</ul>'])
    totals = data.duplicate_totals
    lead = (f"{_num(totals.get('hashes'))} images are stored more than once, as {_num(totals.get('objects'))} "
            f"objects; deleting the extra copies would free {_bytes(totals.get('wasted_bytes'))}.")
    return _section("duplicates", "Duplicates", e(lead),
                    _table([("content md5", False), ("copies", True), ("extra bytes", True), ("URIs", False)], rows))


def _alternatives(predictions) -> str:
    parts = []
    for p in list(predictions or [])[1:4]:
        label, score = (p.get("label"), p.get("score")) if isinstance(p, dict) else (None, None)
        if label is not None and score is not None:
            parts.append(f"{e(label)} {float(score):.2f}")
    return " · ".join(parts)


def _low_confidence(data: ReportData) -> str:
    title = "Low confidence"
    lead = f"The newest images whose top-1 score is below {data.threshold:g}: worth a look, or a better model."
    if not data.low_confidence:
        return _section("low-confidence", title, e(lead), '<p class="empty">None.</p>')
    rows = [[_when(r["timestamp"]), f'<span class="mono">{e(r.get("uri") or r.get("key") or "(inline)")}</span>',
             e(r["top_label"]), _meter(r["top_score"], data.threshold),
             f'<span class="alts">{_alternatives(r.get("predictions"))}</span>'] for r in data.low_confidence]
    return _section("low-confidence", title, e(lead), _table(
        [("time", False), ("image", False), ("top label", False), ("score", False), ("next guesses", False)], rows))


def html(data: ReportData, pngs: dict[str, bytes]) -> str:
    t = data.totals
    span = f"{_when(t.get('first_at'))} – {_when(t.get('last_at'))}" if t.get("first_at") else "no results yet"
    model = f" · model <code>{e(data.model_id)}</code>" if data.model_id else ""
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>bucketeye report</title>", f"<style>{CSS}</style></head><body><main>",
        '<header><div><h1>bucket<span class="eye">eye</span> report</h1>'
        f'<p class="sub">{e(data.source)}{model} · {span}</p></div>'
        f'<p class="sub">generated {data.generated_at.strftime("%Y-%m-%d %H:%M UTC")}</p></header>',
        _cards(data), _labels(data, pngs.get("labels")), _status(data, pngs.get("errors")),
        _latency(data, pngs.get("latency")), _scores(data, pngs.get("scores")), _duplicates(data),
        _low_confidence(data),
        "<footer>bucketeye · results view, de-duplicated by result_id</footer></main></body></html>",
    ]
    return "\n".join(parts)


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
