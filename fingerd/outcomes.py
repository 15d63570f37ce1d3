"""Every value of the metrics' ``outcome``, ``reason`` and ``kind`` labels, defined once.

The access log uses the same words. A user name or an address is never a
label value: each set here is small and fixed, so every series can be shown
from the start, at zero.
"""

# How a finger query was answered.
FOUND = "found"
NOT_FOUND = "not_found"
LISTED = "listed"
REFUSED = "refused"
FORWARDED = "forwarded"
FORWARD_FAILED = "forward_failed"

# How a set request was answered (REFUSED: invalid; DENIED: not this client's to set;
# LIMITED: beyond the rate one account or address may set at).
SET_OK = "ok"
SET_DENIED = "denied"
SET_LIMITED = "limited"
SET_FAILED = "failed"

# How a web request was answered, besides FOUND, NOT_FOUND, LISTED and REFUSED (the
# list denied): the lookup form, a redirect to a user's page, the stylesheet, a
# revalidated answer (304), and a request the site does not serve (400, 405, 431, 505).
FORM = "form"
REDIRECTED = "redirected"
ASSET = "asset"
NOT_MODIFIED = "not_modified"
BAD_REQUEST = "bad_request"

#: A request that failed inside the server, in any service.
ERROR = "error"

#: The outcomes of each service whose requests are counted, ERROR aside.
BY_SERVICE = {
    "finger": (FOUND, NOT_FOUND, LISTED, REFUSED, FORWARDED, FORWARD_FAILED),
    "setter": (SET_OK, REFUSED, SET_DENIED, SET_LIMITED, SET_FAILED),
    "web": (FOUND, NOT_FOUND, LISTED, REFUSED, FORM, REDIRECTED, ASSET, NOT_MODIFIED,
            BAD_REQUEST),
}

# Why a connection was closed before it made a request.
REJECT_BUSY = "max_connections"
REJECT_PER_SOURCE = "per_source"
REJECT_SHED = "shed"
REJECT_TOO_LONG = "line_too_long"
REJECT_TIMEOUT = "timeout"
REJECT_RESOURCES = "accept_failed"
REJECT_NOT_LOCAL = "not_local"
REJECT_PROXY = "proxy"
#: A finger or web client from outside ``allow_from``.
REJECT_NOT_ALLOWED = "not_allowed"
REJECT_REASONS = (REJECT_BUSY, REJECT_PER_SOURCE, REJECT_SHED, REJECT_TOO_LONG,
                  REJECT_TIMEOUT, REJECT_RESOURCES, REJECT_NOT_LOCAL, REJECT_PROXY,
                  REJECT_NOT_ALLOWED)

# Kinds of request: the finger query kinds (RFC 1288 2.3), then the setter's and the web's.
USER = "user"
VERBOSE = "verbose"
LIST = "list"
FORWARDING = "forwarding"
QUERY_KINDS = (USER, VERBOSE, LIST, FORWARDING)
SET_KIND = "set"
# Kinds of web answer: a page, JSON (the API), the stylesheet.
PAGE_KIND = "page"
API_KIND = "api"
ASSET_KIND = "asset"

# How the account behind a setter client was found (PROC: the slow fallback).
SOCK_DIAG = "sock_diag"
PROC = "proc"
PEERCRED = "peercred"
OWNER_LOOKUPS = (SOCK_DIAG, PROC, PEERCRED)
