"""Drill reports people look at rather than read: an HTML page with a chart of RTO and RPO per scenario against
the plan's targets (inline SVG, no dependency), and JUnit XML so any CI shows each scenario as a test."""

from __future__ import annotations

import html
import math
from xml.etree import ElementTree as ET

# The chart's axis: seconds on a log scale, so 5 s and 900 s are both readable.
AXIS_MIN, AXIS_MAX = 1.0, 3600.0
TICKS = [1, 10, 60, 300, 900, 3600]


def _x(seconds: float, left: float, width: float) -> float:
    value = min(max(seconds, AXIS_MIN), AXIS_MAX)
    return left + width * math.log10(value / AXIS_MIN) / math.log10(AXIS_MAX / AXIS_MIN)


def _tick_label(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"


def missed_targets(report: dict) -> list[str]:
    """Scenarios that failed or missed the plan's RTO or RPO, each as a sentence."""
    targets, missed = report["targets"], []
    for s in report["scenarios"]:
        if not s["ok"]:
            missed.append(f"{s['name']}: failed ({s['error']})")
            continue
        if s["rto_seconds"] is not None and s["rto_seconds"] > targets["plan_rto_seconds"]:
            missed.append(f"{s['name']}: RTO {s['rto_seconds']:.1f} s > plan {targets['plan_rto_seconds']:.0f} s")
        if s["rpo_seconds"] is not None and s["rpo_seconds"] > targets["plan_rpo_seconds"]:
            missed.append(f"{s['name']}: RPO {s['rpo_seconds']:.1f} s > plan {targets['plan_rpo_seconds']:.0f} s")
    return missed


def render_svg(report: dict) -> str:
    """Horizontal bars: per scenario its RTO and its RPO, with the plan's targets and our aim (a tenth) as lines."""
    targets, scenarios = report["targets"], report["scenarios"]
    left, width, row, top = 330, 520, 46, 40
    height = top + row * len(scenarios) + 50
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 30}" height="{height}" '
        'font-family="sans-serif" font-size="12" role="img" aria-label="RTO and RPO per scenario">',
        f'<text x="{left}" y="16" font-weight="bold">RTO (blue) and RPO (orange) per scenario, log scale</text>',
    ]
    for tick in TICKS:
        x = _x(tick, left, width)
        parts.append(f'<line x1="{x:.1f}" y1="{top - 8}" x2="{x:.1f}" y2="{height - 40}" stroke="#ddd"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 26}" text-anchor="middle">{_tick_label(tick)}</text>')
    lines = [
        (targets["plan_rto_seconds"], "#1f4e9c", "plan RTO"),
        (targets["aim_rto_seconds"], "#1f4e9c", "aim RTO"),
        (targets["plan_rpo_seconds"], "#c25e00", "plan RPO"),
        (targets["aim_rpo_seconds"], "#c25e00", "aim RPO"),
    ]
    for seconds, colour, label in lines:
        x = _x(seconds, left, width)
        dash = "6,3" if label.startswith("plan") else "2,3"
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 8}" x2="{x:.1f}" y2="{height - 40}" stroke="{colour}" '
            f'stroke-dasharray="{dash}"><title>{label} {seconds:.0f} s</title></line>'
        )
    for index, s in enumerate(scenarios):
        y = top + index * row
        title = html.escape(s["title"] if len(s["title"]) <= 52 else s["title"][:50] + "…")
        parts.append(f'<text x="{left - 8}" y="{y + 18}" text-anchor="end">{title}</text>')
        for offset, key, colour in ((0, "rto_seconds", "#1f4e9c"), (18, "rpo_seconds", "#c25e00")):
            value = s[key]
            if value is None:
                label = "failed" if not s["ok"] else "none"
                parts.append(f'<text x="{left + 4}" y="{y + offset + 13}" fill="#888">{key[:3].upper()} {label}</text>')
                continue
            end = _x(value, left, width)
            parts.append(
                f'<rect x="{left}" y="{y + offset + 2}" width="{max(end - left, 1):.1f}" height="14" fill="{colour}">'
                f"<title>{key[:3].upper()} {value:.1f} s</title></rect>"
            )
            parts.append(f'<text x="{end + 4:.1f}" y="{y + offset + 13}">{value:.1f} s</text>')
    parts.append(
        f'<text x="{left}" y="{height - 8}" fill="#555">dashed: the plan\'s targets (RTO 15 min, RPO 5 min); '
        "dotted: our aim, ten times better</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts)


def render_html(report: dict, markdown_table: str) -> str:
    """A page with the chart, the verdicts and every phase (the markdown report rendered as plain tables)."""
    rows = []
    for line in markdown_table.splitlines():
        if line.startswith("|") and not set(line) <= set("|-"):
            cells = [html.escape(c.strip()).replace("&amp;nbsp;", "&nbsp;") for c in line.strip("|").split("|")]
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 3)
            rows.append(f"</table><h{level}>{html.escape(line.lstrip('# '))}</h{level}><table>")
        elif line.strip():
            rows.append(f"</table><p>{html.escape(line)}</p><table>")
    missed = missed_targets(report)
    verdict = (
        "<p class=ok>Every scenario passed within the plan's targets.</p>"
        if not missed
        else "<p class=bad>" + "<br>".join(html.escape(m) for m in missed) + "</p>"
    )
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>Disaster drill {html.escape(report['started_at'])}</title><style>"
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
        "td{border:1px solid #ccc;padding:2px 8px}.ok{color:#176d17}.bad{color:#b00020;font-weight:bold}"
        "</style></head><body>"
        f"{render_svg(report)}{verdict}<table>{''.join(rows)}</table></body></html>\n"
    )


def render_junit(report: dict) -> str:
    """One testcase per scenario; a failure when it failed or missed the plan's RTO or RPO."""
    missed = missed_targets(report)
    suite = ET.Element(
        "testsuite",
        name="mojorust-dr drill",
        tests=str(len(report["scenarios"])),
        failures=str(sum(1 for s in report["scenarios"] if any(m.startswith(s["name"] + ":") for m in missed))),
        timestamp=report["started_at"],
    )
    for s in report["scenarios"]:
        seconds = sum(p["seconds"] for p in s["phases"])
        case = ET.SubElement(suite, "testcase", classname="drill", name=s["name"], time=f"{seconds:.1f}")
        reasons = [m for m in missed if m.startswith(s["name"] + ":")]
        if reasons:
            ET.SubElement(case, "failure", message="; ".join(reasons)).text = s.get("error") or reasons[0]
        ET.SubElement(case, "system-out").text = f"RTO {s['rto_seconds']} s, RPO {s['rpo_seconds']} s; " + ", ".join(
            f"{p['name']} {p['seconds']} s" for p in s["phases"]
        )
    return ET.tostring(suite, encoding="unicode") + "\n"


def summary_text(report: dict) -> str:
    """The drill in one Telegram message: a line per scenario and the verdict."""
    lines = [f"Disaster drill {report['started_at']}"]
    for s in report["scenarios"]:
        rto = "failed" if s["rto_seconds"] is None else f"RTO {s['rto_seconds']:.0f} s"
        rpo = "" if s["rpo_seconds"] is None else f", RPO {s['rpo_seconds']:.0f} s"
        lines.append(f"{'✅' if s['ok'] else '❌'} {s['name']}: {rto}{rpo}")
    missed = missed_targets(report)
    lines.append("All within the plan's targets." if not missed else "MISSED: " + "; ".join(missed))
    return "\n".join(lines)


def send_telegram(text: str, api_base: str, token: str, chat_id: str, timeout: float = 5) -> str:
    """Send one message with the Telegram Bot API; returns "" or why it was not delivered (never raises: a lost
    summary must not fail the drill). The token is never part of what is returned."""
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{api_base.rstrip('/')}/bot{token}/sendMessage",
        data=json.dumps({"chat_id": chat_id, "text": text}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
        return ""
    except Exception as error:  # any failure is reported, not raised
        return f"summary not delivered: {type(error).__name__}"
