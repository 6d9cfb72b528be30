"""The web page at /-/ui/, in a real headless Chromium against a real `tiddly serve`.

The browser tests run on SQLite and PostgreSQL (the page is the same client whatever
the database; MariaDB would add a minute for no new path), the rest on all three. The
page must never raise an uncaught error, trip its Content-Security-Policy or open a
native dialog (the `page` fixture fails the test if it does).
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
import subprocess
import sys
import time

import pytest
import requests
from browser import chromium, require_browser
from serving import ROOT
from sqlalchemy import ForeignKey
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from tiddly.registry import Registry
from tiddly.services import auth
from tiddly.storage import Database

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
AUTHORS = ["Ursula K. Le Guin", "Octavia E. Butler", "Isaac Asimov"]
XSS_TITLE = "<script>window.__pwned = 1</script>"
XSS_AUTHOR = '<img src=x onerror="window.__pwned = 2">'
in_browser = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(scope="module")
def browser():
    require_browser()
    with chromium() as instance:
        yield instance


@pytest.fixture
def page(browser):
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)  # a loaded machine answers late; nothing here waits on purpose
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    tab.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    tab.on("dialog", lambda d: (problems.append(f"a native dialog opened: {d.message}"), d.dismiss()))
    yield tab
    context.close()
    assert not problems


@pytest.fixture
def server(db_url, live_server_factory):
    """Asked for before `page`, so the browser lets go of its keep-alive connections first
    and the server stops at once."""
    return live_server_factory(db_url, workers=1, threads=4)


def expect(locator):
    from playwright.sync_api import expect as playwright_expect
    return playwright_expect(locator)


# -- helpers ---------------------------------------------------------------------------

def seed_books(server, count=30, headers=None) -> None:
    rows = [{"title": f"Book {i:02}", "author": AUTHORS[i % 3], "year": 1950 + i} for i in range(1, count + 1)]
    answer = requests.post(server.url + "/books", json=rows, headers=headers, timeout=30)
    assert answer.status_code == 201, answer.text


def api(server, method, path, headers=None, **kwargs):
    return requests.request(method, server.url + path, headers=headers, timeout=30, **kwargs)


def new_key(db_url: str, name: str, scope: str, tables=None) -> str:
    db = Database(db_url)
    try:
        with db.session(write=True) as session:
            return auth.create_key(session, name, scope, tables)
    finally:
        db.dispose()


def open_ui(page, server, hash_="#/"):
    page.goto(f"{server.url}/-/ui/{hash_}")
    return page


def column(page, name: str) -> list[str]:
    """The grid's cells under the column header `name`, as shown (a link's own text)."""
    return page.evaluate("""name => {
      const heads = [...document.querySelectorAll('table.grid thead th button')].map(b => b.firstChild.textContent);
      const i = heads.indexOf(name);
      if (i < 0) throw new Error('no column ' + name);
      return [...document.querySelectorAll('table.grid tbody tr')].map(tr => {
        const link = tr.children[i].querySelector('a');
        return link ? link.firstChild.textContent : tr.children[i].textContent;
      });
    }""", name)


def headers_shown(page) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('table.grid thead th button')]"
                         ".map(b => b.firstChild.textContent)")


def status(page):
    return page.locator(".page-status")


def field_error(page, name: str):
    """The error shown beside the row form's field for column `name`."""
    return page.locator(".field").filter(has=page.get_by_label(name, exact=True)).locator(".field-error")


# -- browse ------------------------------------------------------------------------------

@in_browser
def test_browse_page_sort_and_count(server, page):
    seed_books(server, 30)
    open_ui(page, server)
    books = page.get_by_role("row").filter(has=page.get_by_role("link", name="books", exact=True))
    expect(books.get_by_role("cell").first).to_have_text("30")  # under a page: counted for free
    books.get_by_role("link", name="books").click()
    expect(page.get_by_role("heading", name="books")).to_be_visible()
    expect(status(page)).to_have_text("30 rows.")

    page.get_by_label("Rows per page").select_option("10")
    expect(status(page)).to_contain_text("Rows 1–10.")
    assert column(page, "id") == [str(i) for i in range(1, 11)]
    page.get_by_role("button", name="Count all rows").click()
    expect(status(page)).to_contain_text("Rows 1–10 of 30.")

    page.get_by_role("button", name="Next page").click()
    expect(status(page)).to_contain_text("Rows 11–20 of 30.")
    assert column(page, "id") == [str(i) for i in range(11, 21)]
    page.get_by_role("button", name="Next page").click()
    expect(status(page)).to_contain_text("Rows 21–30 of 30 (the last page).")
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    page.get_by_role("button", name="Previous page").click()
    expect(status(page)).to_contain_text("Rows 11–20")
    assert column(page, "id")[0] == "11"
    page.get_by_role("button", name="First page").click()
    expect(status(page)).to_contain_text("Rows 1–10")
    expect(page.get_by_role("button", name="Previous page")).to_be_disabled()

    page.get_by_role("button", name="year").click()  # sorted ascending, then descending
    expect(page.locator("th[aria-sort=ascending]")).to_have_text("year ▲")
    page.get_by_role("button", name="year").click()
    expect(page.locator("th[aria-sort=descending]")).to_have_text("year ▼")
    assert column(page, "year") == [str(y) for y in range(1980, 1970, -1)]
    page.get_by_role("button", name="Next page").click()  # the keyset cursor follows the sort
    expect(status(page)).to_contain_text("Rows 11–20")
    assert column(page, "year") == [str(y) for y in range(1970, 1960, -1)]


@in_browser
def test_filters_combine_and_columns_can_be_chosen(server, page):
    seed_books(server, 30)
    open_ui(page, server, "#/t/books")
    expect(status(page)).to_have_text("30 rows.")
    page.get_by_role("button", name="Add a filter").click()
    page.get_by_label("Filter 1: column").select_option("author")
    page.get_by_label("Filter 1: operator").select_option("eq")
    page.get_by_label("Filter 1: value for author").fill("Isaac Asimov")
    page.get_by_role("button", name="Add a filter").click()
    page.get_by_label("Filter 2: column").select_option("year")
    page.get_by_label("Filter 2: operator").select_option("between")
    page.get_by_label("Filter 2: value for year").fill("1960, 1975")
    page.get_by_role("button", name="Apply filters").click()
    expect(status(page)).to_have_text("5 rows.")
    assert column(page, "year") == ["1961", "1964", "1967", "1970", "1973"]
    assert set(column(page, "author")) == {"Isaac Asimov"}
    assert "author" in page.url and "between" in page.url  # the view is in the address: a bookmark

    page.get_by_text("Columns", exact=True).click()
    expect(page.get_by_label("id", exact=True)).to_be_disabled()  # the key is always shown
    page.get_by_label("isbn", exact=True).uncheck()
    page.get_by_label("author", exact=True).uncheck()
    expect(page.locator("table.grid thead th")).to_have_count(3)
    assert headers_shown(page) == ["id", "title", "year"]

    page.reload()  # the whole view comes back from the address
    expect(status(page)).to_have_text("5 rows.")
    assert headers_shown(page) == ["id", "title", "year"]

    page.get_by_label("Filter 2: value for year").fill("nineteen sixty, 1975")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator(".filter").nth(1).locator(".field-error")).to_contain_text("expects an integer")
    expect(page.get_by_role("alert")).to_contain_text("400")

    page.get_by_role("button", name="Clear filters").click()
    expect(status(page)).to_have_text("30 rows.")


# -- one row -------------------------------------------------------------------------------

@in_browser
def test_edit_insert_and_delete_a_row_with_errors_beside_their_fields(server, page):
    seed_books(server, 3)
    open_ui(page, server, "#/t/books")
    page.get_by_role("link", name="2 (open this books row)").click()
    expect(page.get_by_role("heading", name="books 2")).to_be_visible()
    expect(page.get_by_label("id", exact=True)).not_to_be_editable()  # read-only: shown, not editable
    expect(page.get_by_label("title", exact=True)).to_have_value("Book 02")

    page.get_by_label("year", exact=True).fill("nineteen eighty")  # the API judges it, the page shows where
    page.get_by_role("button", name="Save").click()
    expect(field_error(page, "year")).to_contain_text("column 'year' expects an integer")
    expect(page.get_by_label("year", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("alert")).to_contain_text("Not saved: year needs attention.")
    assert api(server, "GET", "/books/2").json()["data"]["year"] == 1952

    page.get_by_label("year", exact=True).fill("1984")
    page.get_by_label("title", exact=True).fill("Book two, revised")
    page.get_by_label("isbn", exact=True).fill("978-0000000002")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#notice")).to_have_text("Saved books 2.")
    expect(field_error(page, "year")).to_be_empty()
    assert api(server, "GET", "/books/2").json()["data"] == {
        "id": 2, "title": "Book two, revised", "author": AUTHORS[2], "year": 1984, "isbn": "978-0000000002"}
    page.get_by_label("isbn", exact=True).fill("")  # empty is null for a nullable column
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("button", name="Save")).to_be_enabled()  # disabled while saving
    expect(page.locator("#notice")).to_have_text("Saved books 2.")
    assert api(server, "GET", "/books/2").json()["data"]["isbn"] is None

    page.get_by_role("link", name="← books").click()
    page.get_by_role("link", name="Insert a row").click()
    expect(page.get_by_role("heading", name="New row in books")).to_be_visible()
    expect(page.get_by_label("id", exact=True)).to_have_count(0)  # generated by the database
    page.get_by_label("title", exact=True).fill("Kindred")
    page.get_by_role("button", name="Insert").click()
    expect(field_error(page, "author")).to_contain_text("column 'author' of table 'books' is required")
    page.get_by_label("author", exact=True).fill("Octavia E. Butler")
    page.get_by_label("year", exact=True).fill("1979")
    page.get_by_role("button", name="Insert").click()
    expect(page.locator("#notice")).to_have_text("Inserted books 4.")
    expect(page.get_by_role("heading", name="books 4")).to_be_visible()
    assert api(server, "GET", "/books/4").json()["data"]["author"] == "Octavia E. Butler"

    page.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Delete books 4? This cannot be undone.")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert api(server, "GET", "/books/4").status_code == 200
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.locator("#notice")).to_have_text("Deleted books 4.")
    expect(status(page)).to_have_text("3 rows.")
    assert api(server, "GET", "/books/4").status_code == 404


@in_browser
def test_a_row_holding_markup_renders_as_text(server, page):
    created = api(server, "POST", "/books", json={"title": XSS_TITLE, "author": XSS_AUTHOR, "year": 2001})
    assert created.status_code == 201
    open_ui(page, server, "#/t/books")
    expect(status(page)).to_have_text("1 row.")
    assert column(page, "title") == [XSS_TITLE] and column(page, "author") == [XSS_AUTHOR]
    open_ui(page, server, "#/t/books/r/1")
    expect(page.get_by_label("title", exact=True)).to_have_value(XSS_TITLE)
    expect(page.get_by_label("author", exact=True)).to_have_value(XSS_AUTHOR)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main script, main img, body > script:not([src])").count() == 0


# -- keys ------------------------------------------------------------------------------------

@in_browser
def test_a_read_key_sees_no_edit_controls(server, page, db_url):
    seed_books(server, 3)
    open_ui(page, server)
    expect(page.get_by_role("status").filter(has_text="Open mode")).to_be_visible()  # no key exists yet
    reader = new_key(db_url, "reader", "read")

    open_ui(page, server, "#/t/books")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_text("This gateway needs a key.")).to_be_visible()
    expect(page.locator("#banner")).to_be_empty()  # keys are on: no open-mode banner
    page.get_by_label("API key").fill("tdk_not-a-key")
    page.get_by_role("button", name="Use this key").click()
    expect(page.get_by_role("alert")).to_have_text("401 Not signed in: the API key is unknown or revoked")

    page.get_by_label("API key").fill(reader)
    page.get_by_role("button", name="Use this key").click()
    expect(status(page)).to_have_text("3 rows.")
    expect(page.locator("#account")).to_contain_text("key “reader”, read scope")
    assert page.evaluate("sessionStorage.getItem('tiddly.key')") == reader
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("document.cookie") == ""
    assert page.context.cookies() == []
    expect(page.get_by_role("link", name="Insert a row")).to_have_count(0)
    expect(page.get_by_role("button", name="Import")).to_have_count(0)

    page.get_by_role("link", name="1 (open this books row)").click()
    expect(page.get_by_role("heading", name="books 1")).to_be_visible()
    expect(page.locator("dl.record")).to_contain_text("Book 01")
    expect(page.locator("main input, main textarea, main select")).to_have_count(0)
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)

    open_ui(page, server, "#/t/books/new")  # by address: the API refuses, and the page says so plainly
    page.get_by_label("title", exact=True).fill("T")
    page.get_by_label("author", exact=True).fill("A")
    page.get_by_role("button", name="Insert").click()
    expect(page.get_by_role("alert")).to_have_text("403 Not allowed: 'reader' has read scope; this request needs write")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


@in_browser
def test_a_late_401_to_a_request_sent_before_the_key_changed_leaves_the_sign_in_answer(server, page, db_url):
    seed_books(server, 3)
    held = []  # the tables view's row count, sent in open mode, answered late; later requests go on

    def hold_the_first(route):
        route.continue_() if held else held.append(route)

    page.route("**/books", hold_the_first)
    open_ui(page, server)
    expect(page.get_by_role("status").filter(has_text="Open mode")).to_be_visible()
    page.wait_for_function("() => document.querySelector('main td.number') !== null")
    assert len(held) == 1
    new_key(db_url, "reader", "read")

    open_ui(page, server, "#/t/books")
    page.get_by_label("API key").fill("tdk_not-a-key")
    page.get_by_role("button", name="Use this key").click()
    refused = "401 Not signed in: the API key is unknown or revoked"
    expect(page.get_by_role("alert")).to_have_text(refused)

    with page.expect_response(lambda response: response.url.endswith("/books")) as late:
        held[0].continue_()  # now keys are on: 401, but to a request that carried no key
    assert late.value.status == 401
    page.wait_for_timeout(300)
    expect(page.get_by_role("alert")).to_have_text(refused)  # not replaced by a bare sign-in form


@in_browser
def test_a_key_limited_to_tables_lists_only_those(server, page, db_url):
    seed_books(server, 2)
    limited = new_key(db_url, "books only", "write", ["books"])
    open_ui(page, server)
    page.get_by_label("API key").fill(limited)
    page.get_by_role("button", name="Use this key").click()
    expect(page.get_by_role("heading", name="Tables")).to_be_visible()
    expect(page.locator("table.grid tbody tr")).to_have_count(1)
    expect(page.get_by_role("link", name="books", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Insert a row")).to_have_count(0)  # not on the list page
    open_ui(page, server, "#/t/stores")
    expect(page.get_by_role("alert")).to_contain_text("no table named stores is open to you")


@in_browser
def test_log_in_with_email_and_password(server, page, db_url):
    created = api(server, "POST", "/user", json={"email": "ada@example.com", "password": "correct horse"})
    assert created.status_code == 201
    new_key(db_url, "admin", "admin")  # keys on
    open_ui(page, server, "#/t/user")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password", exact=True).fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("401 Not signed in: wrong email or password")
    page.get_by_label("Password", exact=True).fill("correct horse")
    page.get_by_role("button", name="Log in").click()
    expect(status(page)).to_have_text("1 row.")
    expect(page.locator("#account")).to_contain_text("logged in as ada@example.com, write scope")
    assert page.evaluate("sessionStorage.getItem('tiddly.key')").startswith("tdl_")
    assert headers_shown(page) == ["id", "email", "name"]  # the password is write-only: never a column

    page.get_by_role("link", name="1 (open this user row)").click()
    password = page.get_by_label("password", exact=True)
    expect(password).to_have_attribute("type", "password")
    expect(password).to_have_value("")  # never pre-filled
    page.get_by_label("name", exact=True).fill("Ada")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#notice")).to_have_text("Saved user 1.")
    assert api(server, "POST", "/-/login", json={"email": "ada@example.com", "password": "correct horse"}).ok

    page.get_by_label("password", exact=True).fill("battery staple")  # typed: sent; then gone from the form
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("button", name="Save")).to_be_enabled()
    expect(page.locator("#notice")).to_have_text("Saved user 1.")
    expect(page.get_by_label("password", exact=True)).to_have_value("")
    assert api(server, "POST", "/-/login", json={"email": "ada@example.com", "password": "battery staple"}).ok


# -- export and import ---------------------------------------------------------------------------

@in_browser
def test_export_the_filtered_view_as_csv_and_ndjson(server, page):
    seed_books(server, 30)
    where = json.dumps([["author", "in", f"{AUTHORS[0]}, {AUTHORS[1]}"]])
    open_ui(page, server, "#/t/books?" + requests.compat.urlencode({"f": where, "sort": "year", "dir": "desc",
                                                                     "cols": '["id","title","year"]', "size": "10"}))
    expect(status(page)).to_contain_text("Rows 1–10.")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    assert download.value.suggested_filename == "books.csv"
    rows = list(csv.reader(io.StringIO(download.value.path().read_text(encoding="utf-8"))))
    assert rows[0] == ["id", "title", "year"]
    expected = [1950 + i for i in range(30, 0, -1) if i % 3 != 2]
    assert [int(r[2]) for r in rows[1:]] == expected  # every page, in the view's order
    expect(page.get_by_role("status").filter(has_text="Exported")).to_contain_text("Exported books.csv")

    with page.expect_download() as download:
        page.get_by_role("button", name="Export NDJSON").click()
    assert download.value.suggested_filename == "books.ndjson"
    lines = [json.loads(line) for line in download.value.path().read_text(encoding="utf-8").splitlines()]
    assert lines[0] == {"id": 30, "title": "Book 30", "year": 1980} and len(lines) == 20


@in_browser
def test_import_a_csv_file_with_progress(server, page, tmp_path):
    good = tmp_path / "books.csv"
    good.write_text("title,author,year\n" + "".join(f"Imported {i},Someone,{1900 + i % 100}\n" for i in range(3000)))
    bad = tmp_path / "bad.csv"
    bad.write_text("title,author,year\nFine,Someone,1990\nBroken,Someone,199x\n")
    open_ui(page, server, "#/t/books")
    expect(status(page)).to_have_text("No rows.")

    page.get_by_label("Import a CSV or NDJSON file").set_input_files(str(bad))
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("400 Bad request: line 3: column 'year' expects an integer")
    expect(page.locator(".controls")).to_contain_text("Nothing was imported.")
    assert api(server, "GET", "/books", params={"count": "true", "limit": "0"}).json()["count"] == 0

    page.get_by_label("Import a CSV or NDJSON file").set_input_files(str(good))
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Imported 3,000 rows from books.csv.")).to_be_visible()
    expect(page.get_by_label("Uploaded")).to_have_js_property("value", 100)
    expect(status(page)).to_contain_text("Rows 1–50.")
    assert api(server, "GET", "/books", params={"count": "true", "limit": "0"}).json()["count"] == 3000


# -- relations -------------------------------------------------------------------------------------

@in_browser
def test_follow_a_foreign_key_to_the_parent_and_back_to_the_children(server, page):
    assert api(server, "POST", "/stores", json=[{"name": "Corner shop"}, {"name": "Night market"}]).ok
    assert api(server, "POST", "/items", json=[{"name": "Tea", "price": 2.5, "store_id": 2},
                                               {"name": "Bread", "price": 3, "store_id": 1},
                                               {"name": "Noodles", "price": 6.5, "store_id": 2}]).ok
    open_ui(page, server, "#/t/items")
    expect(status(page)).to_have_text("3 rows.")
    page.get_by_role("link", name="2 (open the stores row)").first.click()
    expect(page.get_by_role("heading", name="stores 2")).to_be_visible()
    expect(page.get_by_label("name", exact=True)).to_have_value("Night market")
    page.get_by_role("link", name="items: the items rows with store_id = 2").click()
    expect(status(page)).to_have_text("2 rows.")
    assert column(page, "name") == ["Tea", "Noodles"]
    page.get_by_role("link", name="1 (open this items row)").click()
    expect(page.get_by_role("link", name="store: stores 2")).to_be_visible()


# -- column policies ---------------------------------------------------------------------------------

POLICY_MODELS = '''
from typing import Optional
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

class Base(DeclarativeBase):
    pass

class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255))
    pin: Mapped[Optional[str]] = mapped_column(String(255), info={"policy": "write_only_hashed"})
    secret: Mapped[Optional[str]] = mapped_column(String(64), info={"policy": "hidden"})
    created: Mapped[Optional[str]] = mapped_column(String(32), info={"policy": "read_only"})
'''


def test_hidden_columns_never_appear_and_write_only_ones_are_never_filled(live_server_factory, page, tmp_path):
    models = tmp_path / "policy_models.py"
    models.write_text(POLICY_MODELS)
    url = f"sqlite:///{tmp_path / 'policy.db'}"
    server = live_server_factory(url, workers=1, threads=4, extra_args=["--models", str(models)])
    db = Database(url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO accounts (email, pin, secret, created) VALUES "
                             "('a@example.com', 'scrypt$HASHED-PIN', 'HIDDEN-VALUE-42', '2026-01-01')")
    db.dispose()

    open_ui(page, server, "#/t/accounts")
    expect(status(page)).to_have_text("1 row.")
    assert headers_shown(page) == ["id", "email", "created"]
    page.get_by_role("button", name="Add a filter").click()
    options = page.get_by_label("Filter 1: column").locator("option").all_text_contents()
    assert options == ["id", "email", "created"]
    page.get_by_role("link", name="1 (open this accounts row)").click()
    expect(page.get_by_label("email", exact=True)).to_have_value("a@example.com")
    expect(page.get_by_label("created", exact=True)).not_to_be_editable()
    expect(page.get_by_label("pin", exact=True)).to_have_attribute("type", "password")
    expect(page.get_by_label("pin", exact=True)).to_have_value("")
    expect(page.get_by_label("secret", exact=True)).to_have_count(0)
    assert "HIDDEN-VALUE" not in page.content() and "HASHED-PIN" not in page.content()

    open_ui(page, server, "#/t/accounts/new")
    expect(page.get_by_role("heading", name="New row in accounts")).to_be_visible()
    labels = page.locator("form.row-form label").all_text_contents()
    assert labels == ["email", "pin"]


# -- accessibility -------------------------------------------------------------------------------------

UNLABELLED = """() => {
  const problems = [];
  for (const control of document.querySelectorAll('input, select, textarea')) {
    const names = [...control.labels].map(l => l.textContent.trim()).filter(Boolean);
    if (!names.length) problems.push('no label: ' + control.outerHTML);
  }
  for (const button of document.querySelectorAll('button, a.button')) {
    if (!button.textContent.trim()) problems.push('no text: ' + button.outerHTML);
  }
  return problems;
}"""


@in_browser
def test_every_control_is_labelled_and_the_grid_works_from_the_keyboard(server, page):
    seed_books(server, 30)
    open_ui(page, server, "#/t/books?size=10")
    expect(status(page)).to_contain_text("Rows 1–10.")
    page.get_by_role("button", name="Add a filter").click()
    page.get_by_text("Columns", exact=True).click()
    assert page.evaluate(UNLABELLED) == []
    assert page.locator("table.grid thead th[scope=col]").count() == 5

    page.get_by_role("button", name="year").focus()
    page.keyboard.press("Enter")
    expect(page.locator("th[aria-sort=ascending]")).to_have_text("year ▲")
    page.keyboard.press("Enter")  # the focus stayed on the header's button
    expect(page.locator("th[aria-sort=descending]")).to_have_text("year ▼")
    page.get_by_role("button", name="Next page").focus()
    page.keyboard.press("Enter")
    expect(status(page)).to_contain_text("Rows 11–20.")
    page.keyboard.press("Enter")
    expect(status(page)).to_contain_text("Rows 21–30.")
    assert page.evaluate("document.activeElement.textContent") == "Next page"

    page.get_by_role("link", name="5 (open this books row)").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="books 5")).to_be_focused()
    assert page.evaluate(UNLABELLED) == []
    page.get_by_role("button", name="Delete").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog")).to_be_visible()
    expect(page.get_by_role("dialog").get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    assert api(server, "GET", "/books/5").status_code == 200

    open_ui(page, server, "#/t/books/new")
    expect(page.get_by_role("heading", name="New row in books")).to_be_visible()
    assert page.evaluate(UNLABELLED) == []


# -- the screenshots in docs/ ------------------------------------------------------------------------------

SHOTS = ["ui-grid.png", "ui-read-key.png", "ui-row.png", "ui-sign-in.png", "ui-tables.png"]


def test_the_screenshot_script_takes_the_main_views(tmp_path):
    require_browser()
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "screenshots.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.glob("*.png")) == SHOTS
    for name in SHOTS:
        header = (tmp_path / name).read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(header[16:20], "big") == 1200  # the width
        assert (ROOT / "docs" / name).exists()  # and the committed ones are there for the docs
    assert "](docs/ui-grid.png)" in (ROOT / "README.md").read_text()


# -- the shell, its headers and the routes it needs (no browser) ------------------------------------------

UI_DIR = ROOT / "tiddly" / "web" / "ui"
ASSETS = sorted(p.name for p in (UI_DIR / "static").iterdir())


def test_the_page_and_its_assets_load_without_a_key_under_a_strict_csp(sqlite_url):
    from tiddly import create_app
    from tiddly.config import Config

    app = create_app(Config(database_url=sqlite_url, open_mode_allowed=False))  # keys required
    client = app.test_client()
    try:
        assert client.get("/-/whoami").status_code == 401  # data needs a key...
        page = client.get("/-/ui/")  # ...the page that asks for one does not
        assert page.status_code == 200 and page.mimetype == "text/html"
        assert client.get("/-/ui").status_code == 308 and client.get("/-/ui").headers["Location"] == "ui/"
        assert {"app.js", "api.js", "dom.js", "grid.js", "row.js", "values.js", "tiddly.css"} <= set(ASSETS)
        for response in [page] + [client.get(f"/-/ui/static/{name}") for name in ASSETS]:
            assert response.status_code == 200
            csp = response.headers["Content-Security-Policy"]
            assert "script-src 'self';" in csp and "default-src 'none'" in csp and "unsafe" not in csp
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "Set-Cookie" not in response.headers
        assert client.get("/-/ui/static/app.js").mimetype == "text/javascript"
        assert client.get("/-/ui/static/missing.js").status_code == 404
        assert client.post("/-/ui/").status_code in (401, 405)  # the page is GET only; the rest needs a key
    finally:
        app.extensions["tiddly"].db.dispose()


def test_the_shell_has_no_inline_script_and_the_code_never_writes_html():
    shell = (UI_DIR / "templates" / "tiddly_ui.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>", shell)
    assert scripts and all(" src=" in tag for tag in scripts)
    assert not re.search(r"\son\w+\s*=", shell) and " style=" not in shell
    for path in (UI_DIR / "static").glob("*.js"):
        code = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in code, f"{path.name} uses {sink}"
        assert "localStorage" not in code and "document.cookie" not in code, path.name


def test_whoami_says_who_is_asking(client, db_url):
    assert client.get("/-/whoami").get_json() == {
        "status": "success", "data": {"kind": "open", "name": "open mode", "scope": "admin", "tables": None}}
    secret = new_key(db_url, "reporting", "read", ["stores", "books"])
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/-/whoami", headers=headers).get_json()["data"] == {
        "kind": "key", "name": "reporting", "scope": "read", "tables": ["books", "stores"]}
    assert client.get("/-/whoami").status_code == 401


def test_tables_lists_the_relations_a_client_may_follow(client):
    tables = {t["name"]: t for t in client.get("/-/tables").get_json()["data"]}
    assert tables["items"]["relations"] == [
        {"name": "store", "table": "stores", "many": False, "columns": ["store_id"], "references": ["id"]}]
    assert tables["stores"]["relations"] == [
        {"name": "items", "table": "items", "many": True, "columns": ["id"], "references": ["store_id"]}]
    assert tables["books"]["relations"] == []


class RelationsBase(DeclarativeBase):
    pass


class Owner(RelationsBase):
    __tablename__ = "owners"
    id: Mapped[int] = mapped_column(primary_key=True)


class Pet(RelationsBase):  # its foreign key is hidden: the relation would name it
    __tablename__ = "pets"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id"), info={"policy": "hidden"})
    owner: Mapped[Owner] = relationship()


class Toy(RelationsBase):
    __tablename__ = "toys"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id"))
    owner: Mapped[Owner] = relationship()


def test_relations_on_hidden_columns_or_unexposed_tables_are_left_out():
    mappers = RelationsBase.registry.mappers
    everything = Registry.from_metadata(RelationsBase.metadata).add_relations(mappers).describe()
    assert {t["name"]: [r["name"] for r in t["relations"]] for t in everything} == {
        "owners": ["toys"], "pets": [], "toys": ["owner"]}  # owners -> toys: from the foreign key alone
    no_owners = Registry.from_metadata(RelationsBase.metadata, ["pets", "toys"]).add_relations(mappers)
    assert [t["relations"] for t in no_owners.describe()] == [[], []]


@in_browser
def test_the_grid_shows_other_clients_changes_live_keeping_sort_filter_and_page(server, page):
    """Inserts, updates and deletes made by another client show up without a reload (the grid
    listens to GET /-/changes), in the sort, filter and page the person chose."""
    seed_books(server, 30)
    open_ui(page, server, "#/t/books")
    expect(status(page)).to_have_text("30 rows.")
    page.get_by_label("Rows per page").select_option("10")
    page.get_by_role("button", name="year").click()
    page.get_by_role("button", name="year").click()
    expect(page.locator("th[aria-sort=descending]")).to_have_text("year ▼")
    expect(status(page)).to_contain_text("Rows 1–10")
    assert column(page, "year")[0] == "1980"
    time.sleep(0.5)  # the grid's stream is open

    made = api(server, "POST", "/books", json={"title": "Live", "author": "Other", "year": 2100}).json()["id"]
    expect(page.locator("table.grid tbody tr").first).to_contain_text("Live")
    assert column(page, "year")[:2] == ["2100", "1980"]
    api(server, "PATCH", "/books/30", json={"title": "Changed elsewhere"})
    expect(page.locator("table.grid tbody")).to_contain_text("Changed elsewhere")
    api(server, "DELETE", f"/books/{made}")
    expect(page.locator("table.grid tbody")).not_to_contain_text("Live")
    assert column(page, "year")[0] == "1980" and len(column(page, "year")) == 10
    expect(page.locator("th[aria-sort=descending]")).to_have_text("year ▼")
    expect(status(page)).to_contain_text("Rows 1–10")


@in_browser
def test_the_event_source_example_in_the_changes_doc_runs(server, page):
    """docs/changes.md's browser example, as written, in Chromium: it logs a change made by another client."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "changes.md").read_text()
    (script,) = re.findall(r"```html\n<script>\n(.*?)</script>\n```", doc, re.DOTALL)
    assert len(script.strip().splitlines()) <= 10
    open_ui(page, server)
    page.evaluate("code => { window.key = ''; (0, eval)(code + '\\nwindow.feed = feed;'); }", script)
    for _ in range(200):  # open: subscribed (no wait_for_function: the page's CSP forbids its eval)
        if page.evaluate("() => window.feed.readyState") == 1:
            break
        page.wait_for_timeout(50)
    with page.expect_console_message(lambda message: message.text.startswith("insert books")) as logged:
        made = api(server, "POST", "/books", json={"title": "From the doc", "author": "d"}).json()["id"]
    assert logged.value.text.startswith(f"insert books {{id: {made}}}"), logged.value.text
