"""The web directory's HTML: page templates from files in the package, filled in one place.

The templates are ``string.Template`` files in ``templates/`` beside this
module, read once when it is imported (before the worker sheds root). Every
value ``fill`` puts into a template is HTML-escaped unless it is Markup, which
only ``fill`` makes: escaping happens here and nowhere else, so no page can
forget it. The pages hold no script; their one stylesheet is STYLESHEET.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from string import Template

from fingerd.finger.output import sanitize

TEMPLATES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def _read(name: str) -> str:
    with open(os.path.join(TEMPLATES_DIR, name), encoding="utf-8") as f:
        return f.read()


_TEMPLATES = {name[:-len(".html")]: Template(_read(name).rstrip("\n"))
              for name in sorted(os.listdir(TEMPLATES_DIR)) if name.endswith(".html")}

#: The stylesheet every page links to, as served.
STYLESHEET = _read("style.css").encode("utf-8")


class Markup(str):
    """HTML that ``fill`` made, put into another template as it is."""


def fill(template: str, **values: object) -> Markup:
    """``template`` with ``values`` substituted, each HTML-escaped unless it is Markup."""
    return Markup(_TEMPLATES[template].substitute(
        {key: value if isinstance(value, Markup) else html.escape(str(value))
         for key, value in values.items()}))


class Pages:
    """The site's pages as UTF-8 bytes; ``site`` names the site in every title and header,
    under the output rules (a host name can hold any byte)."""

    def __init__(self, site: str) -> None:
        self.site = sanitize(site)

    def _page(self, title: str, content: Markup) -> bytes:
        return fill("layout", title=f"{title} - {self.site}", site=self.site,
                    content=content).encode("utf-8") + b"\n"

    def directory(self, entries: Sequence[tuple[str, str]], note: str | None = None) -> bytes:
        """The table of ``(name, status)`` pairs, with a closing ``note`` when cut."""
        if not entries:
            return self._page("Users", fill("empty", lookup=fill("lookup")))
        rows = Markup("\n".join(fill("row", name=name, status=status)
                              for name, status in entries))
        return self._page("Users", fill("directory", rows=rows, lookup=fill("lookup"),
                                        note=fill("more", note=note) if note else ""))

    def lookup(self) -> bytes:
        """The page with only the form, where the list is not public."""
        return self._page("Look up a user", fill("lookup_page", lookup=fill("lookup")))

    def user(self, name: str, lines: list[str]) -> bytes:
        """A user's page: ``lines`` of the finger answer as preformatted text."""
        return self._page(name, fill("user", name=name, answer="\n".join(lines),
                                     lookup=fill("lookup")))

    def not_found(self, message: str, detail: str) -> bytes:
        return self._page(message, fill("not_found", message=message, detail=detail,
                                        lookup=fill("lookup")))
