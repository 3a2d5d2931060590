"""Optional dependencies: a missing one is one line naming the extra to install.

::

    pip install 'wirehub[redis]'    redis_url: the distributed mode (Redis broker)
    pip install 'wirehub[celery]'   [jobs] runner = "celery" and ``wirehub worker``

The parts that need them import them only when configured (the core never
does); :func:`require` runs when the hub is built, so a missing package fails
before anything starts, as a :class:`~wirehub.errors.ConfigError` (``wirehub
serve`` prints it and exits 1) instead of an ``ImportError`` traceback from
deep inside a start.
"""

from __future__ import annotations

import importlib

from wirehub.errors import ConfigError

__all__ = ["EXTRAS", "require"]

#: Extra → the modules it must make importable. kombu's Redis transport is
#: listed because it imports ``packaging`` (kombu 5.7 does not declare it).
EXTRAS: dict[str, tuple[str, ...]] = {
    "redis": ("redis", "redis.asyncio"),
    "celery": ("celery", "kombu.transport.redis", "redis"),
}


def require(extra: str, what: str) -> None:
    """Raise ConfigError ("``what`` needs the 'x' extra: pip install …") if it is missing."""
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                f"{what} needs the '{extra}' extra: pip install 'wirehub[{extra}]'",
                extra=extra,
                missing=exc.name or module,
            ) from None
