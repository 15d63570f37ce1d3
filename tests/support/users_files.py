"""The users file in tests: a small one as a fixture, an editor's save, and Hypothesis
strategies for names, statuses, tables and valid files."""

import os

import pytest
from hypothesis import strategies as st

from tests.support.fuzzing import NAMES

#: A small users file: a comment and two entries.
STAFF = b"# staff\nalice:Happy\nbob:Sleeping\n"


def users_file_fixture(data=STAFF):
    """A fixture ``path``: a users file holding ``data`` in the test's own directory."""
    @pytest.fixture
    def path(tmp_path):
        p = tmp_path / "users"
        p.write_bytes(data)
        return str(p)
    return path


def replace_file(path, data):
    """An edit as an editor saves it: ``data`` written beside ``path``, renamed over it."""
    tmp = path + ".edit"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


#: Statuses a users file may hold: no control character but TAB (category Cc), and at
#: most 64 characters, so never more than 256 bytes; drawn as such, not filtered.
STATUSES = st.text(st.characters(exclude_categories=("Cc", "Cs"), include_characters="\t"),
                   max_size=64)
TABLES = st.dictionaries(NAMES, STATUSES, max_size=15)

#: Lines of a valid file other than entries: comments (indented too, holding colons
#: and what looks like an entry) and blank lines.
OTHER_LINES = st.sampled_from(["", "# c", "#", "  # alice:not me", "\t", "   ", "# x:y\r"])
ENDINGS = st.sampled_from(["\n", "\r\n"])


@st.composite
def valid_files(draw):
    """``(bytes, table)``: a valid users file holding ``table``, its entries, comments and
    blank lines mixed, LF and CRLF endings mixed, with or without a final line ending."""
    table = draw(TABLES)
    lines = [f"{name}:{status}" for name, status in table.items()]
    for _ in range(draw(st.integers(0, 6))):
        lines.insert(draw(st.integers(0, len(lines))), draw(OTHER_LINES))
    endings = [draw(ENDINGS) for _ in lines]
    if lines and draw(st.booleans()):
        endings[-1] = ""
    return "".join(line + ending for line, ending in zip(lines, endings)).encode("utf-8"), table
