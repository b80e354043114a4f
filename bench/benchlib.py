"""Pure logic of `make bench` (bench/bench.py): statistics, output parsing, targets, the table, the JSON and the
PNG chart. No podman, no Ansible here, so tests/unit/test_bench.py covers all of it.
"""

from __future__ import annotations

import io
import re
import statistics
from collections.abc import Iterable

MIB = 1048576

# The targets (issue 8), checked against the medians of one run.
TARGETS = {
    "backup_vs_pgbackrest_max": 1.0,
    "backup_vs_naive_min_speedup": 5.0,
    "restore_vs_engine_max": 1.25,
    "restore_vs_naive_min_speedup": 5.0,
    "verify_seconds_max": 10.0,
    "vps_setup_rerun_seconds_max": 60.0,
    "standby_failover_rto_max": 20.0,
}


# Our own paths in a section (the others are the tools people would use instead).
OURS = ("ours", "ours_zstd3", "ours_physical")


def summarize(samples: Iterable[float]) -> dict:
    """Median and spread of repeated measurements: spread_pct is (max - min) / median in percent."""
    values = [float(v) for v in samples]
    if not values:
        return {"runs": 0, "samples": [], "median": None, "min": None, "max": None, "spread_pct": None}
    median = statistics.median(values)
    low, high = min(values), max(values)
    spread = round(100.0 * (high - low) / median, 1) if median > 0 else 0.0
    return {
        "runs": len(values),
        "samples": [round(v, 3) for v in values],
        "median": round(median, 3),
        "min": round(low, 3),
        "max": round(high, 3),
        "spread_pct": spread,
    }


def summarize_values(values: list):
    """Numbers: summarize(); mappings of numbers (phases of one run): summarize() per key; anything else as is."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int | float) for v in present):
        return summarize(present)
    if present and all(isinstance(v, dict) for v in present):
        keys = list(dict.fromkeys(k for v in present for k in v))
        if all(isinstance(v.get(k), int | float) for v in present for k in keys if k in v):
            return {k: summarize([v[k] for v in present if k in v]) for k in keys}
    return values


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator rounded to 0.01; None when either is missing or the denominator is 0."""
    if numerator is None or denominator in (None, 0):
        return None
    return round(numerator / denominator, 2)


def mib_per_second(size_bytes: float | None, seconds: float | None) -> float | None:
    if not size_bytes or not seconds:
        return None
    return round(size_bytes / MIB / seconds, 1)


def median_of(section: dict, name: str) -> float | None:
    entry = section.get(name) or {}
    return (entry.get("seconds") or {}).get("median")


# ---------------------------------------------------------------------------------------------- Ansible output


_RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+"
    r"failed=(?P<failed>\d+)",
    re.MULTILINE,
)
# profile_tasks pads with dashes, down to two for a long task name: "task --- 1.23s", "long task -- 71.42s".
_PROFILE = re.compile(r"^(?P<task>\S.*?) -{2,} (?P<seconds>\d+(?:\.\d+)?)s\s*$", re.MULTILINE)
_DB_RESTORE_DOWN = re.compile(r"bot down (?P<down>[\d.]+) s \(pg_restore (?P<engine>[\d.]+) s\)")
_PITR_DOWN = re.compile(r"bot down (?P<down>[\d.]+) s\b")


def parse_recap(text: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host (the last recap of the output wins)."""
    hosts: dict[str, dict[str, int]] = {}
    for match in _RECAP.finditer(text):
        hosts[match["host"]] = {key: int(match[key]) for key in ("ok", "changed", "unreachable", "failed")}
    return hosts


def parse_profile_tasks(text: str) -> list[tuple[str, float]]:
    """The profile_tasks summary (task --- 1.23s), slowest first, as (task, seconds)."""
    summary = text.split("TASKS RECAP", 1)[-1] if "TASKS RECAP" in text else text
    tasks = [(m["task"].strip(), float(m["seconds"])) for m in _PROFILE.finditer(summary)]
    return sorted(tasks, key=lambda item: item[1], reverse=True)


def parse_db_restore(text: str) -> dict:
    """What db_restore.yml reports: the bot's downtime and the engine time (each step's time: the phase record)."""
    result: dict = {"bot_down_seconds": None, "engine_seconds": None}
    down = _DB_RESTORE_DOWN.search(text)
    if down:
        result["bot_down_seconds"] = float(down["down"])
        result["engine_seconds"] = float(down["engine"])
    return result


def parse_pitr(text: str) -> dict:
    """What pitr.yml reports: the bot's downtime (each step's time: the phase record)."""
    down = _PITR_DOWN.search(text)
    return {"bot_down_seconds": float(down["down"]) if down else None}


# mojorust-backup create prints these as it goes; the phase ends where the next message starts.
BACKUP_MARKS = (
    ("dumping", "dump + table checksums"),
    ("packing files", "files, manifest, tar, sha256, signature"),
    ("verifying before publishing", "verify before publishing"),
    ("published", "retention and exit"),
)


def backup_phases(lines: list[tuple[float, str]], total: float) -> dict[str, float]:
    """Seconds per phase of one `mojorust-backup create` from its timestamped output lines."""
    marks: list[tuple[str, float]] = [("start (python, lock, connect)", 0.0)]
    for at, text in lines:
        for prefix, phase in BACKUP_MARKS:
            if text.startswith(prefix) and all(phase != name for name, _ in marks):
                marks.append((phase, at))
    phases = {}
    for (name, at), (_, until) in zip(marks, [*marks[1:], ("end", total)], strict=True):
        phases[name] = round(until - at, 3)
    return phases


# ---------------------------------------------------------------------------------------------- drill reports


def drill_medians(reports: Iterable[dict]) -> dict[str, dict]:
    """RTO and RPO per scenario as the median of the passed runs in reports/drill-*.json, with how many runs."""
    rto: dict[str, list[float]] = {}
    rpo: dict[str, list[float]] = {}
    seen: dict[str, int] = {}
    titles: dict[str, str] = {}
    for report in reports:
        for scenario in report.get("scenarios", []):
            name = scenario.get("name")
            if not name:
                continue
            seen[name] = seen.get(name, 0) + 1
            titles.setdefault(name, scenario.get("title", name))
            if not scenario.get("ok"):
                continue
            if scenario.get("rto_seconds") is not None:
                rto.setdefault(name, []).append(float(scenario["rto_seconds"]))
            if scenario.get("rpo_seconds") is not None:
                rpo.setdefault(name, []).append(float(scenario["rpo_seconds"]))
    out = {}
    for name in seen:
        rto_stats = summarize(rto.get(name, []))
        rpo_stats = summarize(rpo.get(name, []))
        out[name] = {
            "title": titles[name],
            "reports": seen[name],
            "passed_runs": rto_stats["runs"],
            "rto": rto_stats,
            "rpo": rpo_stats,
        }
    return out


# ---------------------------------------------------------------------------------------------- targets


def evaluate_targets(results: dict) -> list[dict]:
    """Each target of the issue with the measured value and whether it is met (None: not measured)."""
    backup = results.get("backup", {})
    restore = results.get("restore", {})
    ansible = results.get("ansible", {})
    drills = results.get("recovery_paths", {})
    ours_b = median_of(backup, "ours")
    ours_r = median_of(restore, "ours")
    failover = (drills.get("primary_crash_with_standby") or {}).get("rto", {}).get("median")

    def entry(name, value, limit, kind, unit):
        met = None
        if value is not None:
            met = value <= limit if kind == "max" else value >= limit
        return {"target": name, "value": value, "limit": limit, "kind": kind, "unit": unit, "met": met}

    naive_b = median_of(backup, "naive")
    naive_r = median_of(restore, "naive")
    return [
        entry(
            "backup: ours / pgBackRest full",
            ratio(ours_b, median_of(backup, "pgbackrest")),
            TARGETS["backup_vs_pgbackrest_max"],
            "max",
            "x",
        ),
        entry("backup: naive / ours", ratio(naive_b, ours_b), TARGETS["backup_vs_naive_min_speedup"], "min", "x"),
        entry(
            "restore, logical set: db_restore.yml / pg_restore -j",
            ratio(ours_r, median_of(restore, "pg_restore_j")),
            TARGETS["restore_vs_engine_max"],
            "max",
            "x",
        ),
        entry(
            "restore, physical: pitr.yml latest / pgbackrest restore",
            ratio(median_of(restore, "ours_physical"), median_of(restore, "pgbackrest")),
            TARGETS["restore_vs_engine_max"],
            "max",
            "x",
        ),
        entry("restore: naive / ours", ratio(naive_r, ours_r), TARGETS["restore_vs_naive_min_speedup"], "min", "x"),
        entry("verify.yml, one host", median_of(ansible, "verify"), TARGETS["verify_seconds_max"], "max", "s"),
        entry(
            "vps_setup.yml no-change rerun",
            median_of(ansible, "vps_setup_rerun"),
            TARGETS["vps_setup_rerun_seconds_max"],
            "max",
            "s",
        ),
        entry("standby failover RTO (drill median)", failover, TARGETS["standby_failover_rto_max"], "max", "s"),
    ]


# ---------------------------------------------------------------------------------------------- table


def _fmt(value, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}{suffix}"


def _row(label: str, entry: dict, reference: float | None) -> list[str]:
    seconds = entry.get("seconds") or {}
    median = seconds.get("median")
    spread = (
        f"{_fmt(seconds.get('min'))}-{_fmt(seconds.get('max'))} ({_fmt(seconds.get('spread_pct'), 0)}%)"
        if seconds.get("runs")
        else "-"
    )
    size = entry.get("bytes")
    return [
        label,
        _fmt(median),
        spread,
        str(seconds.get("runs", 0)),
        _fmt(size / MIB if size else None, 0),
        _fmt(entry.get("mib_s")),
        _fmt(ratio(median, reference), 2, "x"),
    ]


def _inner_rows(entry: dict, reference: float | None) -> list[list[str]]:
    """Where the time of ours goes: the engine, the bot's downtime and each phase (medians of the runs)."""
    inner = []
    for key, label in (("engine_seconds", "engine (gpg -d | zstd -d | pg_restore)"),
                       ("bot_down_seconds", "bot down")):  # fmt: skip
        if isinstance(entry.get(key), dict) and "median" in entry[key]:
            inner.append(_row(f"  of which {label}", {"seconds": entry[key]}, reference))
    phases = entry.get("phases")
    if isinstance(phases, dict):
        for phase, stats in phases.items():
            if isinstance(stats, dict) and "median" in stats:
                inner.append(_row(f"  phase {phase}", {"seconds": stats}, reference))
    return inner


def render_table(results: dict) -> str:
    """The terminal table: one row per measurement, seconds as median and min-max (spread), ratio to ours."""
    head = ["measurement", "median s", "min-max s (spread)", "runs", "MiB", "MiB/s", "vs ours"]
    rows: list[list[str]] = []
    db = results.get("database", {})
    sections = [
        ("backup", "ours"),
        ("restore", "ours"),
        ("limits", None),
    ]
    for section, ours in sections:
        entries = results.get(section, {})
        if not entries:
            continue
        rows.append([f"-- {section}", "", "", "", "", "", ""])
        reference = median_of(entries, ours) if ours else None
        for name, entry in entries.items():
            rows.append(_row(entry.get("label", name), entry, reference))
            if name in OURS:
                rows.extend(_inner_rows(entry, reference))
    ansible = results.get("ansible", {})
    if ansible:
        rows.append(["-- ansible", "", "", "", "", "", ""])
        base = {"verify": median_of(ansible, "verify"), "vps_setup": median_of(ansible, "vps_setup_rerun")}
        for name, entry in ansible.items():
            reference = base["vps_setup"] if name.startswith("vps_setup") else base["verify"]
            rows.append(_row(entry.get("label", name), entry, reference))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = []
    title = (
        f"database {_fmt((db.get('bytes') or 0) / MIB, 0)} MiB (pgbench scale {db.get('scale', '?')}), "
        f"{results.get('machine', {}).get('cores', '?')} cores; ratios within this run"
    )
    lines.append(title)
    lines.append("  ".join(h.ljust(widths[i]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(head)))
    for row in rows:
        if row[0].startswith("-- "):
            lines.append(row[0])
            continue
        lines.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)))
    drills = results.get("recovery_paths", {})
    if drills:
        lines.append("-- recovery paths (median of the passed drill runs in reports/drill-*.json)")
        for name, d in drills.items():
            lines.append(
                f"{name:<34} RTO {_fmt(d['rto']['median']):>6} s  RPO {_fmt(d['rpo']['median']):>6} s  "
                f"({d['passed_runs']} of {d['reports']} runs passed)"
            )
    targets = results.get("targets", [])
    if targets:
        lines.append("-- targets (issue 8)")
        for t in targets:
            verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
            sign = "<=" if t["kind"] == "max" else ">="
            lines.append(
                f"{t['target']:<44} {_fmt(t['value'], 2):>7}{t['unit']}  (target {sign} {t['limit']}{t['unit']})"
                f"  {verdict}"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- PNG chart
OURS_COLOR = (31, 119, 180)
OTHER_COLOR = (150, 150, 150)
ENGINE_COLOR = (255, 127, 14)


def _rgb(color: tuple[int, int, int]) -> tuple[float, float, float]:
    return tuple(c / 255 for c in color)


def chart_png(title: str, panels: list[tuple[str, list[dict]]], width: int = 1000) -> bytes:
    """Horizontal bars per method (matplotlib): median seconds, a black whisker from min to max, the value at the end;
    a dark line inside ours for its engine's share. width is in pixels (100 dpi).
    panels: [(panel title, [{"label", "median", "min", "max", "ours": bool, "engine": bool, "part": seconds}])]."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    heights = [max(1, len(bars)) * 0.42 + 0.7 for _, bars in panels] or [1.0]
    figure, axes = plt.subplots(
        len(heights), 1, figsize=(width / 100, sum(heights) + 0.9), dpi=100, squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )  # fmt: skip
    figure.suptitle(title, x=0.01, ha="left", fontsize=12, fontweight="bold")
    for axis, (panel_title, bars) in zip(axes[:, 0], panels, strict=False):
        top = max([b.get("max") or b.get("median") or 0 for b in bars] + [1e-9])
        rows = range(len(bars))
        for row, bar in zip(rows, bars, strict=True):
            median = bar.get("median")
            if median is None:
                axis.text(0, row, "  not measured", va="center", color="#960000")
                continue
            color = OURS_COLOR if bar.get("ours") else (ENGINE_COLOR if bar.get("engine") else OTHER_COLOR)
            axis.barh(row, median, height=0.62, color=_rgb(color))
            if bar.get("part"):
                axis.barh(row + 0.22, bar["part"], height=0.1, color=_rgb((20, 60, 100)))
            low, high = bar.get("min"), bar.get("max")
            if low is not None and high is not None:
                axis.errorbar(median, row, xerr=[[median - low], [high - median]], fmt="none", ecolor="black",
                              capsize=4, linewidth=1.2)  # fmt: skip
            axis.text(max(median, high or median) + top * 0.01, row, f"{median:.1f} s", va="center", fontsize=9)
        axis.set_yticks(list(rows), [bar["label"] for bar in bars], fontsize=9)
        axis.invert_yaxis()
        axis.set_xlim(0, top * 1.18)
        axis.set_title(panel_title, loc="left", fontsize=10, color="#3c3c3c")
        axis.grid(axis="x", alpha=0.3)
        axis.spines[["top", "right"]].set_visible(False)
    figure.text(0.01, 0.005, "bars: median; whiskers: min-max; dark line in ours: its engine", fontsize=8,
                color="#5a5a5a")  # fmt: skip
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=100)
    plt.close(figure)
    return out.getvalue()


def chart_panels(results: dict) -> list[tuple[str, list[dict]]]:
    panels = []
    for section, title in (("backup", "BACKUP, seconds"), ("restore", "RESTORE, seconds")):
        bars = []
        for name, entry in results.get(section, {}).items():
            seconds = entry.get("seconds") or {}
            bars.append(
                {
                    "label": entry.get("short", name),
                    "median": seconds.get("median"),
                    "min": seconds.get("min"),
                    "max": seconds.get("max"),
                    "ours": name in OURS,
                    "engine": name in ("pgbackrest", "pg_restore_j", "pg_dump_fc"),
                    "part": (entry.get("engine_seconds") or {}).get("median"),
                }
            )
        if bars:
            panels.append((title, bars))
    return panels
