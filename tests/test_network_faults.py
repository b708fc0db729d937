"""Network faults mid-run, through a TCP proxy written here, in front of the source or the archive:
the connection is cut (RST) or blackholed (traffic silently swallowed). The run fails within the
configured timeouts with one line naming the database, the source's row locks are released,
nothing is lost, and the next run completes once the network is back; /health answers throughout
and /ready answers 503 within its bound. PostgreSQL (TEST_POSTGRES_URL) and MariaDB."""
from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from archiver.engine.connections import make_engine
from archiver.engine.lease import TableLock
from archiver.extensions import db
from tests.app_support import Databases, make_app
from tests.engine_support import NOW, add_policy, all_runs, archived, assert_no_loss, make_orders, source_rows
from tests.run_support import RC_BACKENDS, archive_now, wait_for_line

pytestmark = pytest.mark.slow
#: The servers of ``rc`` (SQLite has no network).
NETWORKED = [backend for backend in RC_BACKENDS if backend != "sqlite"]


class Proxy:
    """Forwards 127.0.0.1:<port> to a database; ``cut()`` resets every connection (RST) and refuses
    new ones, ``blackhole()`` swallows all traffic (no RST, no answer), ``restore()`` forwards again
    (dropping the swallowed connections: the servers would have ended them by their keepalives)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.mode = "pass"
        self.socks: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "cut":
                _reset(client)
                continue
            if self.mode == "blackhole":
                with self.lock:
                    self.socks.append(client)  # accepted, then silence
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                _reset(client)
                continue
            with self.lock:
                self.socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if self.mode == "blackhole":
                    if not data:
                        return  # silence: the other side learns nothing
                    continue  # swallowed
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        if self.mode == "pass":
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.mode = "cut"
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            _reset(s)

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def restore(self) -> None:
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            _reset(s)
        self.mode = "pass"

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        self.restore()


def _reset(s: socket.socket) -> None:
    """Abort a connection: linger 0 makes the close send an RST (the shutdown first wakes a pump
    blocked on it, which would otherwise keep the socket open)."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
    except OSError:
        pass


def _via(url: str, proxy: Proxy) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


TIMEOUTS = {"DB_CONNECT_TIMEOUT_SECONDS": "3", "DB_NETWORK_TIMEOUT_SECONDS": "4", "DB_STATEMENT_TIMEOUT_SECONDS": "5",
            "DB_LOCK_TIMEOUT_SECONDS": "3", "DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS": "3"}
#: A fault is noticed within the statement deadline (statement + network timeouts: 9 s here), plus the
#: clean-up (rollback, one fresh try to write the run record within the connect timeout) and slack.
BOUND = 5 + 4 + 15


@pytest.mark.parametrize("rc", NETWORKED, indirect=True)
@pytest.mark.parametrize("side", ["source", "archive"])
@pytest.mark.parametrize("fault", ["cut", "blackhole"])
def test_a_network_fault_mid_run_fails_cleanly_naming_the_database(rc, side, fault):  # noqa: F811
    app, dbs, source_engine, archive_engine = rc
    make_orders(source_engine, [NOW - timedelta(days=90, minutes=i) for i in range(300)])
    add_policy(app, "orders", batch_size=5)
    original = source_rows(source_engine, "orders")
    url = make_url(dbs.source_url if side == "source" else dbs.archive_url)
    proxy = Proxy(url.host, url.port)
    proxied = Databases(dbs.backend, _via(dbs.source_url, proxy) if side == "source" else dbs.source_url,
                        _via(dbs.archive_url, proxy) if side == "archive" else dbs.archive_url)
    web = make_app(proxied, **{k: int(v) for k, v in TIMEOUTS.items()})
    try:
        proc = archive_now(proxied, "--progress", ARCHIVER_FAULT_POINT="after_batch:1:sleep=0.05", **TIMEOUTS)
        wait_for_line(proc, ": batch 3:")
        getattr(proxy, fault)()
        started = time.monotonic()

        # While the run fails: /health answers at once, /ready says 503 within its bound, and six
        # probes at once take no longer than one.
        client = web.test_client()
        t0 = time.monotonic()
        assert client.get("/health").status_code == 200 and time.monotonic() - t0 < 1
        with ThreadPoolExecutor(6) as pool:
            t0 = time.monotonic()
            answers = list(pool.map(lambda _: web.test_client().get("/ready"), range(6)))
            took = time.monotonic() - t0
        assert all(a.status_code == 503 for a in answers), [a.get_json() for a in answers]
        assert answers[0].get_json()["error"]["details"]["failed"] == [side]
        assert took < 2 + 1.5, took
        assert client.get("/health").status_code == 200

        try:
            out, err = proc.communicate(timeout=40)
        except Exception:
            import signal as _signal
            proc.send_signal(_signal.SIGABRT)
            out, err = proc.communicate(timeout=10)
            raise AssertionError(err[-6000:])
        elapsed = time.monotonic() - started
        assert proc.returncode == 1, out + err
        assert elapsed < BOUND, (elapsed, out, err)
        assert f"orders: failed" in out and f"{side} database error: " in out, out
        assert "Traceback" not in err and len(err.splitlines()) < 10, err

        # The source's row locks are gone (the process rolled back, or the server ended the
        # orphaned transaction after its idle timeout): take them all, not waiting.
        def locks_free() -> bool:
            try:
                with source_engine.connect() as conn:
                    conn.execute(sa.text("SELECT id FROM orders FOR UPDATE NOWAIT")
                                 if dbs.backend == "postgres" else sa.text("SELECT id FROM orders FOR UPDATE NOWAIT"))
                    conn.rollback()
                return True
            except sa.exc.DBAPIError:
                return False
        deadline = time.monotonic() + 15
        while not locks_free():
            assert time.monotonic() < deadline, "source row locks still held"
            time.sleep(0.25)
        assert_no_loss(original, source_rows(source_engine, "orders"), archived(archive_engine, "orders"))
        (failed,) = all_runs(app)
        if side == "source":  # recorded with its real cause
            assert failed.status == "failed" and failed.error.startswith("source database error: ")
        else:  # the archive could not be written: the next run closes it
            assert failed.status in ("failed", "running")

        proxy.restore()
        t0 = time.monotonic()
        while web.test_client().get("/ready").status_code != 200:  # recovers by itself
            assert time.monotonic() - t0 < 15
            time.sleep(0.2)
        done = archive_now(proxied, **TIMEOUTS)
        out, err = done.communicate(timeout=120)
        assert done.returncode == 0, out + err
        src, arc = source_rows(source_engine, "orders"), archived(archive_engine, "orders")
        assert src == {} and arc == original
        runs = all_runs(app)
        assert runs[-1].status == "succeeded"
        assert runs[0].status in ("failed", "abandoned")
        assert TableLock(archive_engine, "orders").current_holder() is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proxy.close()
        with web.app_context():
            for engine in db.engines.values():
                engine.dispose()


@pytest.mark.parametrize("rc", NETWORKED, indirect=True)
def test_a_table_lock_whose_holder_falls_silent_is_free_once_its_session_idles_out(rc):
    """A holder that vanishes without closing its connection (a crashed host, a cut network: no RST)
    frees the table once the server has heard nothing from it for the staleness (PostgreSQL
    idle_session_timeout, MariaDB wait_timeout), instead of after the server's TCP keepalives or its
    8-hour wait_timeout; a live holder whose run thread is busy keeps the table meanwhile: its
    heartbeat thread speaks on the lock's connection."""
    app, dbs, source_engine, archive_engine = rc
    url = make_url(dbs.archive_url)
    proxy = Proxy(url.host, url.port)
    via = make_engine(_via(dbs.archive_url, proxy))
    holder = TableLock(via, "orders", heartbeat_seconds=1, stale_seconds=3)
    other = TableLock(archive_engine, "orders", heartbeat_seconds=1, stale_seconds=3)
    try:
        assert holder.acquire("archive") and holder.idle_bound == 4
        time.sleep(2 * holder.idle_bound)  # a long batch: the run's thread says nothing
        assert not other.acquire("archive") and other.blocker is not None
        blocker = other.blocker
        # its row's heartbeat is fresh: written by the heartbeat thread while the run's thread slept
        assert (datetime.now(timezone.utc) - blocker.heartbeat_at).total_seconds() < 3
        holder.renew_if_due()  # still ours
        proxy.blackhole()  # the holder's host is gone
        silent = time.monotonic()
        while not other.acquire("archive"):
            assert time.monotonic() - silent < holder.idle_bound + 15, "the silent holder's lock was never freed"
            time.sleep(0.25)
        assert other.taken_over is not None and other.taken_over.since == blocker.since
    finally:
        other.release()
        holder.drop()
        proxy.close()
        via.dispose()
