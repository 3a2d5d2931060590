"""Run a module or script under cProfile timed by CPU, not wall clock (``fanout.py --profile``).

``python -m cProfile`` times with ``time.perf_counter``: a coroutine that waits
for seconds between two steps is charged those seconds, so a server idling
between phases shows up as its busiest code. Timing with ``time.process_time``
charges only CPU the process actually spent, which is what CPU per delivery is.

    python bench/cpu_profile.py OUT.prof -m wirehub serve --port 8000
    python bench/cpu_profile.py OUT.prof bench/baselines/raw_picows.py --port 8003

The file is written at exit, including the normal exit after SIGINT.
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time
from pathlib import Path

__all__ = ["main"]


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    out, target, *rest = sys.argv[1:]
    profiler = cProfile.Profile(time.process_time)
    if target == "-m":
        module, *rest = rest
        sys.argv = [module, *rest]
    else:
        sys.argv = [target, *rest]
        sys.path[0] = str(Path(target).resolve().parent)
    profiler.enable()
    try:
        if target == "-m":
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
