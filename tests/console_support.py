"""A real server and a real browser for the console's browser tests.

:class:`LiveServer` serves the app with waitress (as ``scripts/run.sh`` does) on a free port of
127.0.0.1, in a thread, on SQLite files: the demo tables archived by a real archive run, plus a
source table without a policy, and accounts with known passwords. :func:`chromium` starts the
system's Chromium through its chromedriver (Debian's ``chromium`` and ``chromium-driver``); without
them a test skips, or fails under ``CI=true`` (``.ci/run`` installs them).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.app_support import CI, Databases, make_app

PASSWORD = "correct-horse-battery"
ACCOUNTS = {"admin": ("admin", ()), "viewer": ("user", ("orders",)), "eve": ("user", ("events",))}
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1")


@dataclass
class LiveServer:
    url: str
    app: object
    directory: Path
    _server: object
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.close()
        self._thread.join(timeout=10)
        from archiver.extensions import db
        with self.app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_server() -> LiveServer:
    """The app on fresh SQLite files with demo data archived, served by waitress in a thread."""
    from waitress import create_server

    from archiver.extensions import db
    from archiver.models import TablePermission, User
    from archiver.services import database, demo, jobs
    from archiver.services.passwords import hash_password

    directory = Path(tempfile.mkdtemp(prefix="archiver-ui-"))
    dbs = Databases("sqlite", f"sqlite:///{directory / 'source.db'}", f"sqlite:///{directory / 'archive.db'}")
    app = make_app(dbs, RATELIMIT_ENABLED=False)
    with app.app_context():
        database.init_db()
        demo.seed_demo(now=datetime.now(timezone.utc))
        for name, (role, tables) in ACCOUNTS.items():
            user = db.session.execute(sa.select(User).where(User.username == name)).scalar_one_or_none()
            if user is None:
                user = User(username=name, role=role, active=True)
                db.session.add(user)
            user.password_hash = hash_password(PASSWORD, 4)
            user.permissions = [TablePermission(table_name=t) for t in tables]
        db.session.commit()
        jobs.run_archive(trigger="cli")
        # A source table without a policy (for the "new policy" journey), rows of which qualify.
        engine = db.engines["source"]
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE invoices (id INTEGER PRIMARY KEY, customer VARCHAR(40), "
                                 "total NUMERIC(10, 2), issued_at DATETIME NOT NULL)")
            now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
            conn.execute(sa.text("INSERT INTO invoices VALUES (:id, :c, :t, :d)"),
                         [{"id": i, "c": f"customer {i % 7}", "t": f"{i * 3}.50",
                           "d": (now - timedelta(days=2 * i)).isoformat(sep=" ")} for i in range(1, 121)])
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    port = server.effective_port
    thread = threading.Thread(target=server.run, name="waitress-ui-tests", daemon=True)
    thread.start()
    return LiveServer(f"http://127.0.0.1:{port}", app, directory, server, thread)


def _missing(reason: str):
    if CI:
        pytest.fail(f"{reason} (CI=true: the browser tests may not be skipped; .ci/run installs chromium and "
                    "chromium-driver)", pytrace=False)
    pytest.skip(reason)


def chromium(download_dir: Path | None = None):
    """A headless Chromium driven by Selenium through the system's chromedriver."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (requirements-dev.txt)")
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        _missing("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="archiver-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1400,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if download_dir is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                                  "download.prompt_for_download": False})
    service = Service(executable_path=driver_path, log_output=os.devnull)
    driver = webdriver.Chrome(service=service, options=options)
    driver.implicitly_wait(0)
    driver._archiver_profile = profile  # removed by close_chromium
    if download_dir is not None:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow",
                                                               "downloadPath": str(download_dir)})
    return driver


def close_chromium(driver) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(getattr(driver, "_archiver_profile", ""), ignore_errors=True)
