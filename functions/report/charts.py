"""The report's charts: matplotlib with the Agg backend (no display), PNG bytes.

Text from the data (labels, error codes) is drawn literally: matplotlib would read
`$…$` as mathematics, so dollar signs are escaped."""
from __future__ import annotations

import io

INK, MUTED, GRID = "#1e293b", "#64748b", "#e2e8f0"
ACCENT, ACCENT_2, WARN, BAD = "#4f46e5", "#0ea5e9", "#f59e0b", "#e11d48"
DPI = 200          # drawn at twice the size it is shown, so it stays sharp on any screen
SHOWN_DPI = 100    # CSS pixels per figure inch in the page (page.py reads the PNG size)


def _plt():
    try:
        import matplotlib
    except ImportError:
        from functions.console.errors import CommandError
        raise CommandError("the report's charts need matplotlib: pip install -r requirements-dev.txt") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    plt.rcParams.update({
        "font.family": "DejaVu Sans", "font.size": 9.5, "axes.edgecolor": GRID, "axes.labelcolor": MUTED,
        "xtick.color": MUTED, "ytick.color": INK, "axes.titleweight": "bold", "axes.titlesize": 11,
        "axes.titlecolor": INK, "axes.titlelocation": "left", "axes.spines.top": False,
        "axes.spines.right": False, "svg.fonttype": "none", "text.usetex": False})
    return plt


def literal(text, width: int = 30) -> str:
    text = str(text)
    if len(text) > width:
        text = text[:width - 1] + "…"
    return text.replace("$", r"\$")


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    _plt().close(fig)
    return buffer.getvalue()


def _integer_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator
    axis.set_major_locator(MaxNLocator(integer=True))


def labels_chart(rows: list[dict], limit: int = 15) -> bytes:
    plt = _plt()
    rows = rows[:limit][::-1]
    return _count_bars(plt, [literal(r["label"]) for r in rows], [r["images"] for r in rows], ACCENT,
                       title="Images per top label", row_height=0.3, bar_height=0.66)


def errors_chart(rows: list[dict]) -> bytes:
    plt = _plt()
    rows = rows[::-1]
    names = [literal(f"{r['error_code']}{' (retryable)' if r.get('error_retryable') else ''}") for r in rows]
    colors = [WARN if r.get("error_retryable") else BAD for r in rows]
    return _count_bars(plt, names, [r["results"] for r in rows], colors,
                       title="Errors by code", row_height=0.34, bar_height=0.62)


def _count_bars(plt, names: list[str], values: list[int], colors, *, title: str, row_height: float,
                bar_height: float) -> bytes:
    """Horizontal bars of counts, each labelled with its number."""
    fig, ax = plt.subplots(figsize=(5.4, row_height * len(names) + 0.8))
    bars = ax.barh(names, values, color=colors, height=bar_height)
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, color=MUTED, fontsize=8.5)
    ax.set_title(title)
    _integer_ticks(ax.xaxis)
    ax.xaxis.grid(True, color=GRID)
    ax.set_axisbelow(True)
    ax.tick_params(axis="y", length=0)
    ax.margins(x=0.12)
    return _png(fig)


def latency_chart(rows: list[dict], unit: str) -> bytes:
    plt = _plt()
    import matplotlib.dates as mdates
    fig, ax = plt.subplots(figsize=(10.0, 3.2))
    times = [r["period"] for r in rows]
    p50 = [r["p50_ms"] for r in rows]
    p95 = [r["p95_ms"] for r in rows]
    ax.fill_between(times, p50, p95, color=ACCENT_2, alpha=0.15, linewidth=0)
    ax.plot(times, p95, color=ACCENT_2, marker="o", markersize=3.5, linewidth=1.8, label="p95")
    ax.plot(times, p50, color=ACCENT, marker="o", markersize=3.5, linewidth=2.2, label="p50")
    ax.set_title(f"Latency per {unit} (timings_ms.total)")
    ax.set_ylabel("ms")
    ax.set_ylim(bottom=0)
    ax.yaxis.grid(True, color=GRID)
    ax.set_axisbelow(True)
    if len(times) == 1:  # one point: a window of one period each side, so the axis has a range
        from datetime import timedelta
        pad = timedelta(**{{"minute": "minutes", "hour": "hours", "day": "days"}.get(unit, "hours"): 1})
        ax.set_xlim(times[0] - pad, times[0] + pad)
    locator = mdates.AutoDateLocator(maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.legend(frameon=False, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2)
    return _png(fig)


def scores_chart(bins: list[int], threshold: float) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10.0, 3.0))
    width = 1.0 / len(bins)
    lefts = [i * width for i in range(len(bins))]
    colors = [WARN if left + width <= threshold + 1e-9 else ACCENT for left in lefts]
    ax.bar(lefts, bins, width=width * 0.9, align="edge", color=colors)
    ax.axvline(threshold, color=BAD, linestyle="--", linewidth=1.2)
    ax.text(threshold, ax.get_ylim()[1] * 0.96, f"  low confidence < {threshold:g}", color=BAD, fontsize=8.5,
            va="top")
    ax.set_xlim(0, 1)
    ax.set_title("Top-1 score distribution")
    ax.set_xlabel("top_score")
    ax.set_ylabel("images")
    ax.yaxis.grid(True, color=GRID)
    ax.set_axisbelow(True)
    return _png(fig)
