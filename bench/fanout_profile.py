"""Where a server's CPU goes, from the profiles bench/fanout.py can record.

Two sources, printed the same way (top functions by self and by cumulative time):

* ``--profile DIR``: cProfile over the whole server process, timed by CPU
  (bench/cpu_profile.py);
  exact call counts, but deterministic profiling roughly doubles the cost of every
  Python call, so shares are skewed towards call-heavy code and the run's figures
  are not comparable with an unprofiled run.
* ``--py-spy DIR``: ``py-spy record --nonblocking --format raw`` attached to the
  server for each throughput phase only; sampling, so it barely disturbs the
  server, and a function's share of the samples times the phase's CPU µs per
  delivery says how many of those microseconds it accounts for.
"""

from __future__ import annotations

import pstats
from collections import Counter
from pathlib import Path

__all__ = ["cprofile_top", "pyspy_top"]

ROOT = Path(__file__).resolve().parent.parent
#: Function names of the interpreter's import machinery (start-up, not deliveries).
STARTUP = (
    "<module>",
    "_find_and_load",
    "_load_unlocked",
    "_call_with_frames_removed",
    "exec_module",
    "_handle_fromlist",
    "<built-in method builtins.__import__>",
    "<built-in method builtins.__build_class__>",
    "<built-in method builtins.exec>",
)


def in_chain(self_time: float, total_time: float, everything: float) -> bool:
    """A pass-through caller (the event loop, the ASGI stack, the CLI) on the way to the work.

    Such a frame holds a large share of the time but almost none of its own; listing
    them by cumulative time would fill the table with the call chain down to the handler.
    """
    return total_time >= 0.3 * everything and self_time < 0.02 * total_time


def short(path: str) -> str:
    """A readable file name: relative to site-packages or the repository."""
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.replace(str(ROOT) + "/", "")


def cprofile_top(path: Path, n: int = 15) -> str:
    """Top ``n`` functions by self time and by cumulative time in one cProfile file."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in stats.values()) or 1e-9
    rows = [
        (tt, ct, nc, f"{func} ({short(file)}:{line})")
        for (file, line, func), (_, nc, tt, ct, _) in stats.items()
    ]
    out = [f"cProfile (CPU time) {path.name}: {total:.2f} s of profiled CPU in all"]
    # The call chain down to the handler, and the start-up imports, are not where
    # deliveries spend their time.
    inner = [r for r in rows if not in_chain(r[0], r[1], total) and not r[3].startswith(STARTUP)]
    for title, index, pool in (
        ("self time", 0, rows),
        (f"cumulative time ({len(rows) - len(inner)} callers and imports left out)", 1, inner),
    ):
        out.append(f"  top {n} by {title}:  self s | cum s | calls | function")
        for tt, ct, nc, name in sorted(pool, key=lambda r: r[index], reverse=True)[:n]:
            out.append(f"    {tt:7.2f} | {ct:7.2f} | {nc:>9} | {name}")
    return "\n".join(out)


def pyspy_top(paths: list[Path], us_per_delivery: float | None, n: int = 15) -> str:
    """Top ``n`` frames by self and by total share of the samples in py-spy raw files.

    A raw (collapsed) file has one line per distinct stack: ``a (f.py:1);b (g.py:2) COUNT``,
    outermost frame first. Self time is the innermost frame; total time counts a function
    once per stack it appears in.
    """
    self_c: Counter[str] = Counter()
    total_c: Counter[str] = Counter()
    samples = 0
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [short_frame(f) for f in stack.split(";")]
            samples += count
            self_c[frames[-1]] += count
            for frame in set(frames):
                total_c[frame] += count
    if not samples:
        return "py-spy: no samples (did py-spy attach? it needs ptrace permission)"
    scale = us_per_delivery or 0.0
    out = [
        f"py-spy, {samples} samples over {len(paths)} phase(s); 'µs/deliv' = share x the "
        f"phase's server CPU µs/delivery ({scale:.2f})"
    ]
    chain = [f for f, count in total_c.items() if in_chain(self_c[f], count, samples)]
    for frame in chain:
        del total_c[frame]
    for title, counter in (
        ("self", self_c),
        (f"total (inclusive; {len(chain)} pass-through callers left out)", total_c),
    ):
        out.append(f"  top {n} by {title}:  share | µs/deliv | frame")
        for frame, count in counter.most_common(n):
            share = count / samples
            out.append(f"    {share * 100:5.1f} % | {share * scale:8.2f} | {frame}")
    return "\n".join(out)


def short_frame(frame: str) -> str:
    """``func (/long/path/file.py:123)`` -> ``func (file.py:123)`` relative to a known root."""
    name, sep, where = frame.partition(" (")
    if not sep:
        return frame
    return f"{name} ({short(where.rstrip(')'))})"
