"""Hypothesis profiles for the suite, and what the parsers' properties share.

Two profiles, registered and chosen by ``tests/conftest.py``:

- ``default``: Hypothesis's own 100 examples a property, for quick local runs;
- ``ci``: at least 1,000 examples a property, no deadline (a loaded CI machine
  is slow, not wrong), derandomized and with no example database, so that
  every CI run tries the same examples and a failure there is reproducible.

``ci`` is chosen when ``tests.support.in_ci()`` (``.ci/run`` sets ``CI=true``);
``pytest --hypothesis-profile=ci`` chooses it by hand.
"""

import string

from hypothesis import settings
from hypothesis import strategies as st

from tests.support import in_ci

#: Examples a property tries in CI.
CI_EXAMPLES = 1000


def register_profiles():
    """Register ``default`` and ``ci``, and load the one this run calls for."""
    settings.register_profile("default", settings())
    settings.register_profile("ci", max_examples=CI_EXAMPLES, deadline=None,
                              derandomize=True, database=None, print_blob=True)
    settings.load_profile("ci" if in_ci() else "default")


_NAME_FIRST = string.ascii_letters + string.digits + "._"

#: Valid user names (``usersfile.is_valid_name``): built rather than drawn from the
#: regular expression, which is several times slower to generate.
NAMES = st.builds(str.__add__, st.sampled_from(_NAME_FIRST),
                  st.text(_NAME_FIRST + "-", max_size=31))


def tokens(alphabet, max_size=30):
    """Byte strings made of ``alphabet``'s pieces: inputs that reach a grammar's corners
    more often than random bytes do."""
    return st.lists(st.sampled_from(alphabet), max_size=max_size).map(b"".join)


def pieces(data, cuts):
    """``data`` cut at the offsets in ``cuts`` (any integers; out-of-range ones ignored)."""
    offsets = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0] + offsets, offsets + [len(data)])]


def fed(take, chunks, error):
    """What a server loop makes of a request arriving as ``chunks``: as ``ServingLoop._read``
    does, ``take(buf, eof=False)`` on the bytes so far after each chunk until it gives
    something other than None, then ``take(buf, eof=True)`` once the client has closed;
    ``error`` itself when ``take`` raises it."""
    buf = b""
    try:
        for chunk in chunks:
            buf += chunk
            result = take(buf, False)
            if result is not None:
                return result
        return take(buf, True)
    except error:
        return error


def byte_by_byte(data):
    return [data[i:i + 1] for i in range(len(data))]
