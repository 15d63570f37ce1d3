"""What the web directory answers, without sockets: routes, pages that are well-formed,
accessible HTML with every value escaped in one place, and JSON as the contract has it."""

import json
from html.parser import HTMLParser
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.finger.answer import Rules
from fingerd.finger.output import Renderer
from fingerd.finger.pages import Markup, Pages, fill
from fingerd.finger.sources import Directory, FileSource
from fingerd.finger.web import Site
from fingerd.users.usersfile import is_valid_name

USERS = {"alice": "Happy and well", "bob": "<i>Sleeping</i> & \"dreaming\"",
         "eve": "caf\u00e9 \u202eevil"}


class Store:
    """Publishes its table as the store does: a plain attribute."""

    def __init__(self, users):
        self.table = users


def site(users=USERS, list_users=True, renderer=Renderer()):
    return Site(Directory([FileSource(Store(users))]), Rules(list_users=list_users), renderer,
                Pages("Finger directory of test"))


VOID = {"meta", "link", "input", "br", "hr", "img"}


class Checker(HTMLParser):
    """Every element closed in order, with the attributes and text kept for the checks."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.open = []
        self.elements = []
        self.text = []
        self.doctype = None

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open.pop() == tag, f"</{tag}> closes {self.open}"

    def handle_data(self, data):
        self.text.append(data)


def checked(body):
    checker = Checker()
    checker.feed(body.decode("utf-8"))
    checker.close()
    assert checker.open == [] and checker.doctype == "DOCTYPE html"
    return checker


def attrs_of(checker, tag):
    return [attrs for name, attrs in checker.elements if name == tag]


PAGES = [("/", True), ("/", False), ("/users/alice", True), ("/users/nobody", True),
         ("/nothing", True)]


@pytest.mark.parametrize("path, list_users", PAGES)
def test_every_page_is_well_formed_accessible_html_without_script(path, list_users):
    page = checked(site(list_users=list_users).answer(path, "").body)
    names = [name for name, _ in page.elements]
    assert attrs_of(page, "html") == [{"lang": "en"}]
    assert {"charset": "utf-8"} in attrs_of(page, "meta")
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in \
        attrs_of(page, "meta")
    assert names.count("title") == 1 and names.count("h1") == 1 and names.count("main") == 1
    assert "script" not in names and not any(
        key.startswith("on") for _, attrs in page.elements for key in attrs)
    inputs = attrs_of(page, "input")
    labels = {attrs["for"] for attrs in attrs_of(page, "label")}
    assert inputs and all(attrs["id"] in labels for attrs in inputs)


def test_the_directory_is_a_table_with_headers_and_links():
    page = checked(site().answer("/", "").body)
    assert [attrs.get("scope") for attrs in attrs_of(page, "th")] == ["col", "col"]
    assert [attrs["href"] for attrs in attrs_of(page, "a")][1:] == [
        "/users/alice", "/users/bob", "/users/eve"]
    text = "".join(page.text)
    assert '<i>Sleeping</i> & "dreaming"' in text and "caf\u00e9 evil" in text


def test_statuses_are_escaped_once_and_pass_the_output_rules_first():
    body = site().answer("/", "").body.decode()
    assert "&lt;i&gt;Sleeping&lt;/i&gt; &amp; &quot;dreaming&quot;" in body
    assert "&amp;lt;" not in body and "\u202e" not in body
    caret = site(renderer=Renderer([("Happy", "Glad")], "caret")).answer("/", "").body.decode()
    assert "Glad and well" in caret and "cafM-CM-) evil" in caret


def test_a_long_list_is_cut_with_finger_s_note():
    many = {f"u{i:05d}": "s" * 60 for i in range(2000)}
    page = site(many).answer("/", "").body.decode()
    assert page.count("<tr>") < 2000 and "(more users not shown)" in page
    api = json.loads(site(many).answer("/api/users", "").body)
    assert len(api["users"]) == page.count("<tr>") - 1


def test_an_empty_directory_says_so():
    assert "No users to show yet." in site({}).answer("/", "").body.decode()


def test_json_shapes():
    s = site()
    assert json.loads(s.answer("/api/users/alice", "").body) == {
        "user": "alice", "found": True, "answer": "Login: alice\nStatus: Happy and well"}
    assert json.loads(s.answer("/api/users/zed", "").body) == {"user": "zed", "found": False}
    assert json.loads(s.answer("/api/users", "").body)["users"][1] == {
        "user": "bob", "status": '<i>Sleeping</i> & "dreaming"'}
    assert b"<" not in s.answer("/api/users", "").body


@given(st.text(max_size=40))
def test_a_404_json_echoes_only_a_valid_user_name(name):
    reply = site().answer("/api/users/" + quote(name, safe=""), "")
    if reply.status == 404:
        assert json.loads(reply.body)["user"] == (name if is_valid_name(name) else None)


def test_the_site_name_passes_the_output_rules():
    page = Pages("host\u202e\u200bname\x07").lookup().decode()
    assert "hostname" in page and not {"\u202e", "\u200b", "\x07"} & set(page)


def test_the_form_redirects_only_to_valid_names():
    assert site().answer("/users", "name=alice").location == "/users/alice"
    for query in ("name=%0d%0aSet-Cookie:x", "name=a/b", "name=", "", "name=a%40b"):
        reply = site().answer("/users", query)
        assert reply.status == 404 and reply.location is None


def test_fill_escapes_every_value_but_markup():
    assert fill("more", note='<a href="x">') == '<p class="note">&lt;a href=&quot;x&quot;&gt;</p>'
    assert fill("more", note=Markup("<b>x</b>")) == '<p class="note"><b>x</b></p>'


@given(st.text(max_size=80))
def test_any_status_shows_as_its_rendered_text_and_nothing_more(status):
    s = site({"alice": status})
    shown = Renderer().line(status)
    page = checked(s.answer("/users/alice", "").body)
    assert f"Status: {shown}" in "".join(page.text)
    assert "script" not in [name for name, _ in page.elements]
    assert json.loads(s.answer("/api/users/alice", "").body)["answer"].endswith(shown)
