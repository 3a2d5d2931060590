"""The tables bench/fanout.py prints: medians over repetitions, ratios taken within each one.

A ratio is computed inside each repetition (both servers measured minutes apart on
the same machine state) and the median of those ratios is shown, which is steadier
on a shared machine than a ratio of medians. The reference for ratios is the raw
picows server, the near-limit baseline.
"""

from __future__ import annotations

import statistics
from typing import Any

__all__ = ["LABELS", "REFERENCE", "loadgen_warnings", "report"]

LABELS = {
    "wirehub": "wirehub",
    "wirehub-batched": "wirehub (batched)",
    "naive": "naive FastAPI",
    "raw": "raw websockets",
    "picows": "raw picows",
}
#: The server every ratio is taken against.
REFERENCE = "picows"
#: A load-generator process above this share of one core may be what limits the run.
BUSY = 0.8


def values(runs: list[dict[str, Any]], kind: str, key: str, field_: str) -> list[float]:
    out = []
    for run_ in runs:
        value = run_.get(kind, {}).get(key, {}).get(field_)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append(float(value))
        elif isinstance(value, bool):
            out.append(1.0 if value else 0.0)
    return out


def median_of(runs: list[dict[str, Any]], kind: str, key: str, field_: str) -> float | None:
    found = values(runs, kind, key, field_)
    return statistics.median(found) if found else None


def median_ratio(
    runs: list[dict[str, Any]],
    key: str,
    field_: str,
    other: str,
    kind: str = "wirehub",
    other_key: str | None = None,
) -> float | None:
    ratios = []
    for run_ in runs:
        mine = run_.get(kind, {}).get(key, {}).get(field_)
        theirs = run_.get(other, {}).get(other_key or key, {}).get(field_)
        if mine is not None and theirs:
            ratios.append(mine / theirs)
    return statistics.median(ratios) if ratios else None


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def report(data: dict[str, Any], sizes: Any, servers: list[str]) -> str:
    runs = data["runs"]
    lines: list[str] = []
    shown = [s for s in servers if any(run_.get(s) for run_ in runs)]
    skipped = {
        s: run_[s]["skipped"] for run_ in runs for s in servers if run_.get(s, {}).get("skipped")
    }
    header = "| scenario | metric | " + " | ".join(LABELS[s] for s in shown) + " |"
    lines += [header, "|---|---|" + "---|" * len(shown)]

    def row(scenario: str, metric: str, key: str, field_: str, spec: str = ".1f") -> None:
        cells = [fmt(median_of(runs, s, key, field_), spec) for s in shown]
        if all(c == "n/a" for c in cells):
            return
        lines.append(f"| {scenario} | {metric} | " + " | ".join(cells) + " |")

    def kept(scenario: str, key: str) -> None:
        cells = []
        for s in shown:
            found = values(runs, s, key, "kept_up")
            cells.append(f"{int(sum(found))} of {len(found)}" if found else "n/a")
        if all(c == "n/a" for c in cells):
            return
        lines.append(f"| {scenario} | kept up (reps) | " + " | ".join(cells) + " |")

    def pair_row(scenario: str, metric: str, key: str, first: str, second: str) -> None:
        cells = []
        for s in shown:
            a, b = median_of(runs, s, key, first), median_of(runs, s, key, second)
            cells.append("n/a" if a is None or b is None else f"{a:.2f} / {b:.2f}")
        if any(c != "n/a" for c in cells):
            lines.append(f"| {scenario} | {metric} | " + " | ".join(cells) + " |")

    def cpu_rows(name: str, key: str) -> None:
        row(name, "**server CPU µs/delivery**", key, "cpu_us_per_delivery", ".2f")
        pair_row(
            name,
            "server CPU µs/delivery: user / system",
            key,
            "server_user_us_per_delivery",
            "server_sys_us_per_delivery",
        )

    def loadgen_rows(name: str, key: str) -> None:
        row(name, "loadgen: busiest process, % of a core", key, "loadgen_max_util_pct", ".0f")
        row(name, "loadgen: its core(s) busy %", key, "loadgen_core_util_pct", ".0f")
        pair_row(
            name,
            "loadgen: subscriber CPU µs/delivery, user / system",
            key,
            "loadgen_user_us_per_delivery",
            "loadgen_sys_us_per_delivery",
        )

    for subs, msgs in sizes.throughput:
        key = f"s1_{subs}x{msgs}"
        name = f"1. {subs} subs x {msgs} msgs, window {sizes.window}"
        row(name, "deliveries/s", key, "deliveries_per_s", ".0f")
        cpu_rows(name, key)
        row(name, "latency p50 ms", key, "p50_ms")
        row(name, "latency p99 ms", key, "p99_ms")
        row(name, "loss %", key, "loss_pct", ".2f")
        loadgen_rows(name, key)
    for rate in sizes.rates:
        key = f"s2_{rate:g}"
        name = f"2. {sizes.rate_subs} subs @ {rate:g}/s ({sizes.rate_subs * rate:,.0f} deliv/s)"
        row(name, "deliveries/s achieved", key, "deliveries_per_s", ".0f")
        kept(name, key)
        row(name, "latency p50 ms", key, "p50_ms", ".2f")
        row(name, "latency p99 ms", key, "p99_ms", ".2f")
        cpu_rows(name, key)
        loadgen_rows(name, key)
    for key, label in (
        ("s3_nopause", "nobody paused"),
        ("s3_paused", f"{sizes.slow_paused} paused"),
    ):
        name = f"3. {sizes.slow_subs} subs, 16 KiB @ {sizes.slow_rate:g}/s, {label}"
        row(name, "reading subs' loss %", key, "loss_pct", ".2f")
        row(name, "reading subs' p50 ms", key, "p50_ms", ".2f")
        row(name, "reading subs' p99 ms", key, "p99_ms", ".2f")
        row(name, "reading subs' worst delivery ms", key, "max_ms")
        row(name, "server RSS growth MiB", key, "rss_growth_mib")
        if key == "s3_paused":
            row(name, "paused subs closed", key, "paused_closed", ".0f")
    isolation = []
    for s in shown:
        calm = median_of(runs, s, "s3_nopause", "p99_ms")
        paused = median_of(runs, s, "s3_paused", "p99_ms")
        isolation.append(f"{paused / calm:.2f}x" if calm and paused is not None else "n/a")
    if any(c != "n/a" for c in isolation):
        lines.append(
            "| 3. isolation | readers' p99 with paused / without (medians) | "
            + " | ".join(isolation)
            + " |"
        )
    row(f"4. {sizes.idle} idle connections", "server KiB/connection", "s4", "kib_per_connection")
    for kind, reason in skipped.items():
        lines.append(f"\n{LABELS[kind]}: not run ({reason})")

    others = [s for s in shown if s != REFERENCE]
    if REFERENCE in shown and others:
        ratios: list[str] = []

        def ratio_row(scenario: str, metric: str, key: str, field_: str) -> None:
            cells = [fmt(median_ratio(runs, key, field_, REFERENCE, kind=s), ".2f") for s in others]
            if any(c != "n/a" for c in cells):
                cells = [c if c == "n/a" else f"{c}x" for c in cells]
                ratios.append(f"| {scenario} | {metric} | " + " | ".join(cells) + " |")

        for subs, msgs in sizes.throughput:
            key = f"s1_{subs}x{msgs}"
            ratio_row(f"1. {subs}x{msgs}", "deliveries/s", key, "deliveries_per_s")
            ratio_row(f"1. {subs}x{msgs}", "server CPU µs/delivery", key, "cpu_us_per_delivery")
        for rate in sizes.rates:
            key = f"s2_{rate:g}"
            ratio_row(f"2. {rate:g}/s", "latency p99", key, "p99_ms")
            ratio_row(f"2. {rate:g}/s", "server CPU µs/delivery", key, "cpu_us_per_delivery")
        ratio_row("4. idle", "KiB/connection", "s4", "kib_per_connection")
        if ratios:
            lines += ["", f"Ratios to {LABELS[REFERENCE]} (median of per-repetition ratios):", ""]
            lines.append("| scenario | metric | " + " | ".join(LABELS[s] for s in others) + " |")
            lines += ["|---|---|" + "---|" * len(others), *ratios]

    for prefix in ("x_", "xr_"):
        cross = cross_table(runs, sizes, prefix)
        if cross:
            lines += ["", *cross]
    warnings = loadgen_warnings(runs)
    lines += [
        "",
        *(warnings or [f"No load-generator process, nor their cores, above {BUSY:.0%} busy."]),
    ]
    return "\n".join(lines)


def cross_table(runs: list[dict[str, Any]], sizes: Any, prefix: str = "x_") -> list[str]:
    """Cross-node (wirehub only): CPU per delivery summed over the nodes, vs one node."""
    subs, msgs = sizes.cross
    single = f"{prefix}single"
    keys = [
        ("one node, no Redis", single),
        ("one node + Redis", f"{prefix}single_redis"),
        ("nodes A + B + Redis (pub on A, subs split)", f"{prefix}cross"),
    ]
    if not any(run_.get("wirehub", {}).get(f"{prefix}cross") for run_ in runs):
        return []
    how = (
        f"{subs} subs x {msgs} msgs, window {sizes.window}"
        if prefix == "x_"
        else f"{subs} subs at {sizes.cross_rate:g} msgs/s for {sizes.cross_seconds:g} s"
    )
    lines = [
        f"Cross-node, wirehub, {how} (server CPU summed over the nodes; Redis's own CPU apart):",
        "",
        "| run | deliveries/s | server CPU µs/delivery | redis CPU µs/delivery "
        "| p50 ms | p99 ms | CPU/delivery vs one node |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, key in keys:
        ratio = median_ratio(runs, key, "cpu_us_per_delivery", "wirehub", other_key=single)
        lines.append(
            f"| {label} | {fmt(median_of(runs, 'wirehub', key, 'deliveries_per_s'), '.0f')} "
            f"| {fmt(median_of(runs, 'wirehub', key, 'cpu_us_per_delivery'), '.2f')} "
            f"| {fmt(median_of(runs, 'wirehub', key, 'redis_cpu_us_per_delivery'), '.2f')} "
            f"| {fmt(median_of(runs, 'wirehub', key, 'p50_ms'))} "
            f"| {fmt(median_of(runs, 'wirehub', key, 'p99_ms'))} "
            f"| {'n/a' if ratio is None else f'{ratio:.2f}x'} |"
        )
    return lines


def loadgen_warnings(runs: list[dict[str, Any]]) -> list[str]:
    """One line per phase in which a load-generator process was above ``BUSY`` of a core."""
    out = []
    for rep, run_ in enumerate(runs):
        for kind, results in run_.items():
            for key, result in results.items():
                if not isinstance(result, dict):
                    continue
                top = result.get("loadgen_max_util_pct")
                core = result.get("loadgen_core_util_pct")
                where = f"rep {rep + 1} {LABELS.get(kind, kind)} {key}"
                if top is not None and top > BUSY * 100:
                    out.append(
                        f"WARNING {where}: a load-generator process used {top:.0f} % of a core "
                        "(it may be what limits deliveries/s)"
                    )
                elif core is not None and core > BUSY * 100:
                    out.append(
                        f"WARNING {where}: the load generators' core(s) were {core:.0f} % busy "
                        "(they may be what limits deliveries/s; CPU µs/delivery still holds)"
                    )
    return out
