"""The console in a real browser: headless Chromium driven by Selenium, against a real waitress server.

One server for the module (SQLite files: the demo tables archived by a real run; the browser tests
need no other backend — the pages call the same services that every backend's tests cover). Each
test signs in afresh. After every page the browser's console must hold no error (a script error or
a Content-Security-Policy violation would show there). The tests save screenshots of the main pages
at desktop (1400 px) and phone (390 px) width into ``docs/screenshots/``.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.console_support import PASSWORD, chromium, close_chromium, start_server

pytestmark = pytest.mark.slow

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
DESKTOP, PHONE = (1400, 900), (390, 844)


@pytest.fixture(scope="module")
def server():
    srv = start_server()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(server, downloads):
    driver = chromium(download_dir=downloads)
    yield driver
    close_chromium(driver)


@pytest.fixture
def page(browser, server):
    """The browser, signed out, at desktop width, its console log emptied."""
    browser.set_window_size(*DESKTOP)
    browser.get(server.url + "/ui/login")
    browser.delete_all_cookies()
    browser.get_log("browser")
    return browser


def by(css: str):
    from selenium.webdriver.common.by import By
    return (By.CSS_SELECTOR, css)


def wait(driver, css: str, timeout: float = 10):
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout).until(ec.presence_of_element_located(by(css)))


def wait_until(condition, timeout: float = 10, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {message}")


def navigate(driver, action) -> None:
    """Do ``action`` (a click, a key press) and wait for the next page to replace this one."""
    from selenium.webdriver.support.ui import WebDriverWait
    old = driver.find_element(*by("html"))
    action()
    WebDriverWait(driver, 15).until(lambda _driver: is_stale(old))
    wait(driver, "main")


def is_stale(element) -> bool:
    """The element left the document. Chromium says so either with a stale-element error or, when
    asked in the middle of the navigation, with "Node with given id does not belong to the document"."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


def text_of(driver, css: str) -> str:
    """The element's text, or "" while it is missing or being replaced (the live preview swaps it)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    try:
        return driver.find_element(*by(css)).text
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def no_console_errors(driver) -> None:
    """No script error, CSP violation or failed resource on the page (its own status, such as a 403
    page's, is what the test checks itself)."""
    page_url = driver.current_url
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"
              and not (e.get("source") == "network" and e.get("message", "").startswith(page_url + " "))]
    assert not errors, errors


def open_page(driver, url: str) -> None:
    driver.get(url)
    wait(driver, "main")
    no_console_errors(driver)


def sign_in(driver, server, username: str, path: str = "/ui/") -> None:
    driver.get(server.url + path)
    wait(driver, "#username").send_keys(username)
    driver.find_element(*by("#password")).send_keys(PASSWORD)
    driver.find_element(*by("form.stack button[type=submit]")).click()
    wait_until(lambda: "/ui/login" not in driver.current_url, message="the sign-in")
    wait(driver, "main")
    no_console_errors(driver)


def row_ids(driver) -> list[str]:
    return [a.text for a in driver.find_elements(*by("#rows tbody tr td:first-child a"))]


def screenshot(driver, name: str) -> None:
    """The page at desktop and at phone width, into docs/screenshots/ (small PNGs)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        driver.set_window_size(*size)
        driver.refresh()                  # laid out (and scripted) at this width from the start
        wait(driver, "main")
        time.sleep(0.8)
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} is {overflow}px wider than a {label} window"  # wide tables scroll inside
        path = SCREENSHOTS / f"{name}-{label}.png"
        driver.save_screenshot(str(path))
        assert 0 < path.stat().st_size < 300_000, path
    driver.set_window_size(*DESKTOP)
    driver.refresh()
    wait(driver, "main")


def sign_in_with_the_keyboard(driver, server, username: str) -> None:
    """Sign in without the mouse: the username field has the focus, Tab moves on, Enter sends."""
    from selenium.webdriver.common.keys import Keys
    driver.get(server.url + "/ui/")
    wait(driver, "#username")
    active = driver.switch_to.active_element
    assert active.get_attribute("id") == "username"
    active.send_keys(username, Keys.TAB)
    driver.switch_to.active_element.send_keys(PASSWORD, Keys.ENTER)
    wait_until(lambda: "/ui/login" not in driver.current_url, message="the sign-in")
    wait(driver, "main")
    no_console_errors(driver)


def test_a_viewer_browses_filters_opens_a_row_exports_and_signs_out(page, server, downloads):
    driver = page
    driver.get(server.url + "/ui/login")
    wait(driver, "#username")
    screenshot(driver, "sign-in")
    sign_in_with_the_keyboard(driver, server, "viewer")
    assert driver.current_url == server.url + "/ui/"
    screenshot(driver, "tables")
    tables = [a.text for a in driver.find_elements(*by("table.data tbody th a"))]
    assert tables == ["orders"]                       # only the granted table

    from selenium.webdriver.common.keys import Keys
    navigate(driver, lambda: driver.find_element(*by("table.data tbody th a")).send_keys(Keys.ENTER))  # keyboard
    wait(driver, "#rows")
    no_console_errors(driver)
    first = row_ids(driver)
    assert len(first) == 50
    screenshot(driver, "table")
    navigate(driver, driver.find_element(*by("#next-page")).click)
    wait(driver, "#rows")
    second = row_ids(driver)
    assert len(second) == 50 and not set(first) & set(second)
    assert int(second[0]) < int(first[-1])            # newest first, page after page
    navigate(driver, driver.find_element(*by("#prev-page")).click)
    wait(driver, "#rows")
    assert row_ids(driver) == first
    no_console_errors(driver)

    # filter: a field condition and a date window (keyboard-free date entry: set the input's value)
    where = driver.find_element(*by("#where"))
    where.clear()
    where.send_keys("status = 'closed'")
    driver.execute_script("document.getElementById('row_date_to').value = arguments[0]", "2030-01-01")
    navigate(driver, driver.find_element(*by("form.filters button[type=submit]")).click)
    wait(driver, "#rows")
    assert "where=status" in driver.current_url and "row_date_to=2030-01-01" in driver.current_url
    headers = [th.text for th in driver.find_elements(*by("#rows thead th"))]
    status_col = headers.index("status") + 1
    statuses = {td.text for td in driver.find_elements(*by(f"#rows tbody td:nth-child({status_col})"))}
    assert statuses == {"closed"}
    no_console_errors(driver)

    # one row as a record
    navigate(driver, driver.find_element(*by("#rows tbody tr td:first-child a")).click)
    wait(driver, "#record")
    names = [th.text for th in driver.find_elements(*by("#record tbody th"))]
    assert names == ["id", "customer", "status", "amount", "created_at"]
    assert not driver.find_elements(*by("#restore-title"))   # restore is for admins
    no_console_errors(driver)
    screenshot(driver, "row")
    navigate(driver, driver.back)
    wait(driver, "#rows")

    # export of the current filter
    for old in downloads.glob("*"):
        old.unlink()
    driver.find_element(*by(".toolbar a[href*='format=csv']")).click()
    csv_file = wait_until(lambda: next((p for p in downloads.glob("orders-archive-*.csv")), None), 15,
                          "the CSV download")
    wait_until(lambda: csv_file.stat().st_size > 0 and not list(downloads.glob("*.crdownload")), 15, "the download")
    lines = csv_file.read_text().splitlines()
    assert lines[0].startswith('"id","source_pk","row_date","archived_at","payload.id"')
    assert len(lines) > 10 and all('"closed"' in line for line in lines[1:])

    # sign out: back to the sign-in page, and the table is out of reach
    navigate(driver, driver.find_element(*by("form.signout button")).click)
    wait(driver, "#username")
    assert "signed out" in driver.find_element(*by(".notice")).text
    driver.get(server.url + "/ui/tables/orders")
    wait(driver, "#username")
    assert "/ui/login" in driver.current_url
    no_console_errors(driver)


def test_a_viewer_cannot_reach_another_table_or_an_admin_page(page, server):
    driver = page
    sign_in(driver, server, "viewer")
    nav = [a.text for a in driver.find_elements(*by("header nav a"))]
    assert "Policies" not in nav and "Users" not in nav and "Runs" not in nav
    for path in ("/ui/tables/events", "/ui/tables/audit_log", "/ui/policies", "/ui/users", "/ui/runs",
                 "/ui/policies/orders", "/ui/tables/events/export?format=csv"):
        driver.get(server.url + path)        # typing the URL
        heading = wait(driver, "main h1").text
        assert heading == "Not allowed", path
        assert "orders" not in driver.find_element(*by("main")).text or path.startswith("/ui/policies/orders")
        no_console_errors(driver)
    # a link to another table's row (say, from a colleague) is refused the same way
    driver.get(server.url + "/ui/tables/events/rows/1")
    assert wait(driver, "main h1").text == "Not allowed"


def test_an_admin_creates_a_policy_with_a_preview_starts_a_dry_run_and_edits_grants(page, server):
    driver = page
    sign_in(driver, server, "admin")
    open_page(driver, server.url + "/ui/policies")
    from selenium.webdriver.support.ui import Select
    Select(driver.find_element(*by("#new-table"))).select_by_value("invoices")
    navigate(driver, driver.find_element(*by("form.inline-form button")).click)
    wait(driver, "#policy-form")
    assert Select(driver.find_element(*by("#date_column"))).first_selected_option.get_attribute("value") == "issued_at"
    # the live preview appears without saving: 120 invoices, one every 2 days, 30 days cut-off
    wait_until(lambda: text_of(driver, "#preview-count").startswith("106 rows would be archived"), 15,
               "the live preview")
    samples = driver.find_elements(*by("#preview-samples tbody tr"))
    assert len(samples) == 5
    screenshot(driver, "policy")
    wait(driver, "#preview-count", 15)
    days = driver.find_element(*by("#archive_after_days"))
    days.clear()
    days.send_keys("100")
    wait_until(lambda: text_of(driver, "#preview-count").startswith("71 rows"), 15, "the preview to follow the edit")
    no_console_errors(driver)
    navigate(driver, driver.find_element(*by("#save-button")).click)
    wait(driver, ".notice")
    assert driver.find_element(*by(".notice")).text == "Created."
    assert driver.find_element(*by("#archive_after_days")).get_attribute("value") == "100"
    # a dry run from the policy page: counts what would move, moves nothing
    navigate(driver, driver.find_element(*by("#dry-run")).click)
    assert "/ui/runs/" in driver.current_url
    wait_until(lambda: text_of(driver, "#run-detail [data-field=status]") == "succeeded", 20, "the dry run to end")
    assert text_of(driver, "#run-detail [data-field=rows_read]") == "71"
    assert "dry run" in driver.find_element(*by("#run-detail")).text
    no_console_errors(driver)
    screenshot(driver, "run")
    open_page(driver, server.url + "/ui/policies")
    assert "invoices" in [a.text for a in driver.find_elements(*by("#policies tbody th a"))]

    # the viewer gets the events table too
    open_page(driver, server.url + "/ui/users")
    screenshot(driver, "users")
    navigate(driver, next(a for a in driver.find_elements(*by("#users tbody th a")) if a.text == "viewer").click)
    wait(driver, "#grants-form")
    box = next(b for b in driver.find_elements(*by("#grants-form input[type=checkbox]"))
               if b.get_attribute("value") == "events")
    assert not box.is_selected()
    box.click()
    navigate(driver, driver.find_element(*by("#save-grants")).click)
    wait(driver, ".notice")
    box = next(b for b in driver.find_elements(*by("#grants-form input[type=checkbox]"))
               if b.get_attribute("value") == "events")
    assert box.is_selected()
    no_console_errors(driver)

    # runs: the archive run of the demo tables is listed
    open_page(driver, server.url + "/ui/runs")
    kinds = {td.text.split()[0] for td in driver.find_elements(*by("#runs tbody td:nth-child(2)"))}
    assert "archive" in kinds


def test_docs_render_offline(page, server):
    """/docs: Swagger UI from this origin (no CDN), under the strict CSP, without console errors."""
    driver = page
    driver.get(server.url + "/docs")
    title = wait(driver, ".swagger-ui .info .title", 20)
    assert "archiver" in title.text
    assert driver.find_elements(*by(".opblock-tag"))
    no_console_errors(driver)
