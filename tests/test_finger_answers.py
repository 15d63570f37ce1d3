"""What the finger service answers, without sockets."""

from fingerd.finger.answer import Rules, answer, may_forward, parse_query
from fingerd.finger.output import Renderer
from fingerd.finger.sources import Directory, FileSource


class Store:
    """Publishes its table as the store does: a plain attribute."""

    def __init__(self, users):
        self.table = users


USERS = {"alice": "Happy and well", "bob": "Sleeping", "eve": "x\u202ey"}


class Extra:
    """A second source that knows one name, including one the file also has."""

    def lookup(self, name, verbose):
        return {"zed": ["Login: zed"], "alice": ["from the second source"]}.get(name)

    def listing(self):
        yield "alice", "alice: from the second source"
        yield "zed", "zed: second"


DIRECTORY = Directory([FileSource(Store(USERS)), Extra()])


def ask(line, rules=Rules(), forward=None, renderer=Renderer()):
    return answer(parse_query(line), DIRECTORY, rules, renderer, forward)


def test_known_user():
    assert ask(b"alice") == ("found", b"Happy and well\r\n")


def test_verbose_file_user_gets_name_and_status():
    assert ask(b"/W alice") == ("found", b"Login: alice\r\nStatus: Happy and well\r\n")


def test_unknown_user():
    assert ask(b"carol") == ("not_found", b"No such user\r\n")


def test_names_are_case_sensitive():
    assert ask(b"Alice")[1] == b"No such user\r\n"


def test_later_source_answers_what_the_file_does_not_know():
    assert ask(b"zed") == ("found", b"Login: zed\r\n")


def test_list_denied_by_default():
    assert ask(b"") == ("refused", b"Finger online user list denied\r\n")
    assert ask(b"/W ") == ("refused", b"Finger online user list denied\r\n")


def test_list_when_allowed_merges_sources_file_first():
    assert ask(b"", Rules(list_users=True)) == (
        "listed", b"alice: Happy and well\r\nbob: Sleeping\r\neve: xy\r\nzed: second\r\n")


def test_list_is_cut_with_a_note():
    many = Directory([FileSource(Store({f"u{i}": "s" * 50 for i in range(5000)}))])
    lines = many.listing(4096)
    assert sum(len(line) + 2 for line in lines) <= 4096 + 100
    assert lines[-1] == "(more users not shown)"


def test_forwarding_denied_by_default():
    for line in (b"alice@host", b"@host", b"/W a@b@c"):
        assert ask(line) == ("refused", b"Finger forwarding service denied\r\n")


def test_forwarding_relays_the_answer_filtered():
    asked = []

    def forward(query):
        asked.append(query)
        return True, ["remote \x1b[31mstatus", "second line"]

    result = ask(b"/W bob@example.org", Rules(forwarding=True), forward)
    assert result == ("forwarded", b"remote [31mstatus\r\nsecond line\r\n")
    assert (asked[0].user, asked[0].verbose, asked[0].hosts) == ("bob", True, ("example.org",))


def test_forwarding_failure_is_one_line():
    result = ask(b"bob@example.org", Rules(forwarding=True),
                 lambda q: (False, ["example.org: no answer within 5 s"]))
    assert result == ("forward_failed", b"example.org: no answer within 5 s\r\n")


def test_more_than_one_hop_is_refused():
    assert not may_forward(parse_query(b"a@b@c"), Rules(forwarding=True))


def test_empty_host_is_refused():
    assert not may_forward(parse_query(b"a@"), Rules(forwarding=True))


def test_allow_list_is_compared_as_written_without_case():
    rules = Rules(forwarding=True, forward_allow=("finger.example.org",))
    assert may_forward(parse_query(b"a@Finger.Example.ORG"), rules)
    assert not may_forward(parse_query(b"a@other.example.org"), rules)
    assert not may_forward(parse_query(b"a@127.0.0.1"), rules)


def test_status_is_filtered_on_the_way_out():
    assert ask(b"eve")[1] == b"xy\r\n"


def test_output_rules_apply_to_every_answer():
    renderer = Renderer([("Happy", "Glad"), ("user", "person")], "caret")
    assert ask(b"alice", renderer=renderer)[1] == b"Glad and well\r\n"
    assert ask(b"carol", renderer=renderer)[1] == b"No such person\r\n"


def test_list_is_in_name_order_within_each_source():
    users = {"zoe": "z", "adam": "a", "mia": "m"}
    lines = Directory([FileSource(Store(users)), Extra()]).listing(4096)
    assert lines == ["adam: a", "mia: m", "zoe: z", "alice: from the second source",
                     "zed: second"]
