"""What the local stack prints: one line per landed result, and the stack's card."""
from __future__ import annotations

from rich.panel import Panel
from rich.text import Text


def result_line(entry: dict) -> Text:
    """One landed row, as `up` shows it: where the image came from and what it is."""
    payload = entry.get("jsonPayload", {})
    source = payload.get("source") or {}
    name = source.get("uri") or source.get("key") or f"{source.get('trigger')} {source.get('event_id') or ''}".strip()
    line = Text(entry.get("timestamp", "")[11:19] + "  ", style="dim")
    if payload.get("status") == "ok":
        total = (payload.get("timings_ms") or {}).get("total")
        line.append("✓ ", style="green").append(f"{name} → ").append(str(payload.get("top_label")), style="bold")
        line.append(f" {payload.get('top_score', 0):.3f}" + (f"  ({total:.0f} ms)" if total is not None else ""))
    else:
        error = payload.get("error") or {}
        line.append("✗ ", style="red").append(f"{name}: {error.get('code')}: {error.get('message')}")
    return line


def stack_card(info: dict, state_root) -> Panel:
    buckets = ", ".join(f"gs://{b}" for b in info["buckets"])
    body = Text(f"functions server   {info['server_url']}   (upload page: {info['server_url']}/)\n"
            f"GCS emulator       {info['gcs_url']}   buckets: {buckets}\n"
            f"Pub/Sub emulator   {info['pubsub_host']}   project: {info['project']}\n"
            f"warehouse          {info['warehouse']}\n"
            f"state              {state_root}\n\n"
            "try, in another terminal:\n"
            "  python main.py upload photo.jpg\n"
            "  python main.py publish --image photo.jpg\n"
            "  python main.py results\n"
            "  python main.py query \"SELECT jsonPayload.top_label AS label, COUNT(*) AS n "
            "FROM run_googleapis_com_stdout GROUP BY label ORDER BY n DESC\"")
    return Panel(body, title="bucketeye local stack", subtitle="Ctrl-C stops it", expand=False)
