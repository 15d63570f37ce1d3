"""What the web directory answers (README, "The web directory"): pure logic, no I/O.

A request's path and query are answered from the same directory, rules and
renderer as the finger service: a user's page and JSON are what finger
answers for ``/W NAME``, the list is finger's list and is shown only where
finger shows it (``list_users``), ``.nofinger`` and ``min_uid`` hold through
the directory, and nothing is forwarded. Methods, validators and headers are
HTTP's business, in serving/web.py.
"""

from __future__ import annotations

import json
from typing import NamedTuple
from urllib.parse import parse_qs, unquote

from fingerd.finger.answer import LIST_DENIED, NO_SUCH_USER, Query, Rules, answer
from fingerd.finger.output import Renderer
from fingerd.finger.pages import STYLESHEET, Pages
from fingerd.finger.sources import MORE_USERS, Directory
from fingerd.limits import MAX_LIST_BYTES
from fingerd.outcomes import (
    API_KIND,
    ASSET,
    ASSET_KIND,
    FORM,
    FOUND,
    LISTED,
    NOT_FOUND,
    PAGE_KIND,
    REDIRECTED,
    REFUSED,
)
from fingerd.users.usersfile import is_valid_name

HTML = "text/html; charset=utf-8"
JSON = "application/json"
CSS = "text/css; charset=utf-8"

STYLESHEET_PATH = "/style.css"


class Reply(NamedTuple):
    """What the site answers: HTTP status, outcome label, body and its type; for the
    access log the kind and the name asked for; for a redirect its target."""

    status: int
    outcome: str
    content_type: str | None = None
    body: bytes = b""
    kind: str | None = None
    name: str | None = None
    location: str | None = None


#: Characters JSON may hold as they are but that some reader could take for markup.
_MARKUP_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def _json(status: int, outcome: str, value: object, name: str | None = None) -> Reply:
    """UTF-8 JSON; ``<``, ``>`` and ``&`` escaped, so that even a reader that ignores the
    type sees no markup."""
    text = json.dumps(value, ensure_ascii=False).translate(_MARKUP_ESCAPES)
    body = text.encode("utf-8") + b"\n"
    return Reply(status, outcome, JSON, body, API_KIND, name)


class Site:
    """The web directory over a finger Directory, its Rules and its Renderer; ``pages``
    makes the HTML.

    Making a reply (the finger answer, then its JSON or page) is most of a web
    request's Python time: where the directory is the users file alone, the web
    service keeps each reply it made, per users table and request target
    (serving/web.py).
    """

    def __init__(self, directory: Directory, rules: Rules, renderer: Renderer,
                 pages: Pages) -> None:
        self.directory = directory
        self.rules = rules
        self.renderer = renderer
        self.pages = pages

    def reads_directory(self, path: str) -> bool:
        """Whether answering ``path`` asks the directory, which may block (accounts, plans)."""
        return path == "/" and self.rules.list_users or path.startswith(("/users/", "/api/"))

    def answer(self, path: str, query: str) -> Reply:
        """The Reply to a GET of ``path`` with ``query`` (both as sent, percent-encoded)."""
        if path == "/":
            return self._home()
        if path == STYLESHEET_PATH:
            return Reply(200, ASSET, CSS, STYLESHEET, ASSET_KIND)
        if path == "/users":
            return self._lookup(query)
        if path == "/api/users":
            return self._api_list()
        segments = path.split("/")
        if len(segments) == 3 and segments[1] == "users":
            return self._user_page(unquote(segments[2]))
        if len(segments) == 4 and segments[1:3] == ["api", "users"]:
            return self._api_user(unquote(segments[3]))
        return Reply(404, NOT_FOUND, HTML, self.pages.not_found(
            "Not found", "There is no page at this address."), PAGE_KIND)

    def _home(self) -> Reply:
        if not self.rules.list_users:
            return Reply(200, FORM, HTML, self.pages.lookup(), PAGE_KIND)
        entries, cut = self._entries()
        return Reply(200, LISTED, HTML,
                     self.pages.directory(entries, MORE_USERS if cut else None), PAGE_KIND)

    def _lookup(self, query: str) -> Reply:
        """The form's target: on to the user's page, which has an address of its own."""
        name = parse_qs(query).get("name", [""])[0].strip()
        if not is_valid_name(name):
            return self._no_such_user(name)
        return Reply(303, REDIRECTED, kind=PAGE_KIND, name=name, location=f"/users/{name}")

    def _user_page(self, name: str) -> Reply:
        lines = self._lines(name)
        if lines is None:
            return self._no_such_user(name)
        return Reply(200, FOUND, HTML, self.pages.user(name, lines), PAGE_KIND, name)

    def _no_such_user(self, name: str) -> Reply:
        detail = (f"Nobody here goes by {name}." if is_valid_name(name)
                  else "That is not a user name here.")
        return Reply(404, NOT_FOUND, HTML, self.pages.not_found(NO_SUCH_USER, detail),
                     PAGE_KIND, name)

    def _api_list(self) -> Reply:
        """The list as finger shows it; where finger's is cut (and ends with its note),
        ``"more": true`` says so, as the page's note does."""
        if not self.rules.list_users:
            return _json(403, REFUSED, {"error": LIST_DENIED})
        entries, cut = self._entries()
        listed: dict[str, object] = {"users": [{"user": name, "status": status}
                                               for name, status in entries]}
        if cut:
            listed["more"] = True
        return _json(200, LISTED, listed)

    def _api_user(self, name: str) -> Reply:
        """The user's JSON; where not found, ``"user"`` echoes ``name`` only when it is a
        valid user name, else null: the path's text is the client's, not a user's."""
        lines = self._lines(name)
        if lines is None:
            shown = name if is_valid_name(name) else None
            return _json(404, NOT_FOUND, {"user": shown, "found": False}, name)
        return _json(200, FOUND, {"user": name, "found": True, "answer": "\n".join(lines)},
                     name)

    def _lines(self, name: str) -> list[str] | None:
        """What finger answers for ``/W name``, as lines; None where it says No such user."""
        if not is_valid_name(name):
            return None
        outcome, data = answer(Query(True, name, ()), self.directory, self.rules,
                               self.renderer)
        if outcome != FOUND:
            return None
        return data.decode("utf-8").split("\r\n")[:-1]

    def _entries(self) -> tuple[list[tuple[str, str]], bool]:
        """``(name, status)`` for the users the finger list shows, in its order, each status
        under the output rules; and whether the list was cut."""
        entries, cut = self.directory.entries(MAX_LIST_BYTES)
        line = self.renderer.line
        return [(name, line(text[len(name) + 2:] if text.startswith(name + ": ") else text))
                for name, text in entries], cut
