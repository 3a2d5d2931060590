"""Griffe extension for ``make docs`` (mkdocs.yml loads it for docs/api.md).

The docstrings are written for ``help()`` and for the site at once, in the reST habits of
the code base: Sphinx roles (``:class:`~wirehub.jobs.buffer.EventBuffer```) and literal
blocks introduced by ``::``. mkdocstrings renders docstrings as Markdown, where a role is
noise, so each role becomes a code span (the last dotted part when written with ``~``) and
a trailing ``::`` becomes ``:``, leaving the indented block below it as a code block.

It also makes a missing docstring a build failure: mkdocstrings silently leaves out a member
without one, so a public method added to a documented class would vanish from the API page.
Every public function and property defined on the classes named in ``require_docstrings``
must have one; each that does not is a warning, which ``mkdocs build --strict`` turns into
an error naming it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

__all__ = ["WirehubDocs", "markdown_from_rest"]

ROLE = re.compile(r":(?:class|meth|func|attr|data|mod|exc|obj):`(~?)([^`]+)`")
LITERAL = re.compile(r"(\S)::$", re.MULTILINE)
LONE_LITERAL = re.compile(r"^\s*::$\n", re.MULTILINE)

logger = griffe.logger


def _role(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def markdown_from_rest(text: str) -> str:
    """The docstring with Sphinx roles as code spans and ``::`` as ``:``."""
    text = ROLE.sub(_role, text)
    text = LONE_LITERAL.sub("\n", text)
    return LITERAL.sub(r"\1:", text)


class WirehubDocs(griffe.Extension):
    """Rewrites reST habits into Markdown and reports undocumented public members."""

    def __init__(self, require_docstrings: list[str] | None = None) -> None:
        super().__init__()
        self.require_docstrings = list(require_docstrings or [])

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_from_rest(obj.docstring.value)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for path in self.require_docstrings:
            self._check(pkg, path)

    def _check(self, pkg: griffe.Module, path: str) -> None:
        root, _, rest = path.partition(".")
        if root != pkg.name:
            return
        try:
            obj = pkg[rest] if rest else pkg
        except KeyError:
            logger.warning("require_docstrings: %s does not exist", path)
            return
        if not obj.docstring:
            logger.warning("%s has no docstring", path)
        if not obj.is_class:
            return
        for name, member in obj.members.items():
            if name.startswith("_") or member.is_alias:
                continue
            public = member.is_function or "property" in member.labels
            if public and not member.docstring:
                logger.warning(
                    "%s.%s has no docstring: the API page would leave it out", path, name
                )
