"""The command line keeps its promise on every input: one line, exit 2, nothing changed
(issue 12, finding 6), including generated arguments for every entry subcommand."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy import text

from domain.clock import utcnow
from domain.db import make_engine, make_session_factory
from domain.migrations import upgrade
from domain.queue.status import EntryStatus
from runtime.settings import Settings
from tests.helpers import cli_runner, entry


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("JOBQUEUE_TIMEZONE", "Europe/Amsterdam")
    return cli_runner(capsys)


@pytest.fixture
def sessions(settings: Settings) -> Iterator[Any]:
    engine = make_engine(settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


def dump(settings: Settings) -> list[tuple[Any, ...]]:
    """Every row of the job-queue tables, to compare before and after a refused command."""
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows: list[tuple[Any, ...]] = []
            for table in ("job_queue_entries", "job_queue_categories", "job_queue_log_entries"):
                rows += [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1"))]
            return rows
    finally:
        engine.dispose()


def refused(result: tuple[int, str, str], *words: str) -> str:
    code, _out, err = result
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err
    return err


def add_e1(cli: Any) -> None:
    code, _, err = cli("entries", "add", "E1", "--job", "sleep", "--recurring")
    assert code == 0, err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--rerun-delay", "999999999999"], ["--rerun-delay", "over the maximum of 3600 seconds"]),
        (["--inactivity-timeout", "9999999999"], ["--inactivity-timeout", "maximum"]),
        (["--inactivity-timeout", "3"], ["0 (off)", "minimum of 5 minutes"]),
        (["--minutes-between-runs", "9999999999"], ["--minutes-between-runs", "maximum"]),
        (["--priority", "99999999999999999999"], ["--priority", "maximum of 1000"]),
        (["--maximum-attempts", "11"], ["--maximum-attempts", "maximum of 10"]),
        (["--maximum-attempts", "0"], ["minimum of 1"]),
        (["--job-timeout", "99999999999"], ["--job-timeout"]),
        (["--expiration", "9999-12-31T23:59-12:00"], ["expiration"]),
        (["--earliest-start", "0001-01-01T00:00+14:00"], ["0001-01-01"]),
        (["--window", "08:00Z-18:00Z"], ["time zone"]),
        (["--parameter", "seconds=nan"], ["seconds"]),
        (["--parameter", "seconds=inf"], ["seconds"]),
        (["--description", "x" * 251], ["description", "maximum of 250"]),
        (["--user", "u" * 51], ["user"]),
    ],
)
def test_absurd_values_are_one_line_naming_the_option_and_change_nothing(
    cli: Any, settings: Settings, argv: list[str], words: list[str]
) -> None:
    add_e1(cli)
    before = dump(settings)
    refused(cli("entries", "set", "E1", *argv), *words)
    refused(cli("entries", "add", "E2", "--job", "sleep", "--recurring", *argv), *words)
    assert dump(settings) == before


def test_fail_times_must_be_a_whole_number(cli: Any, settings: Settings) -> None:
    before = dump(settings)
    refused(
        cli("entries", "add", "F", "--job", "fail", "--parameter", "fail_times=1.5"), "fail_times"
    )
    assert dump(settings) == before


def test_number_options_say_their_bounds_and_units(
    cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli("entries", "add", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "0 to 3600 seconds" in flat and "0 (off) or 5 to 527040 minutes" in flat
    assert "1 to 10 attempts" in flat and "-1000 to 1000" in flat


def test_ready_on_an_expired_one_off_entry_is_refused_and_changes_nothing(
    cli: Any, settings: Settings, sessions: Any
) -> None:
    past = (utcnow() - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M+00:00")
    expired = (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M+00:00")
    assert (
        cli(
            "entries",
            "add",
            "ONCE",
            "--job",
            "noop",
            "--earliest-start",
            past,
            "--expiration",
            expired,
        )[0]
        == 0
    )
    assert cli("hold", "ONCE")[0] == 0
    before = dump(settings)
    refused(cli("ready", "ONCE"), "has expired")
    assert dump(settings) == before
    assert entry(sessions, "ONCE").status == EntryStatus.ON_HOLD


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("JOBQUEUE_DISPATCH_BATCH", "inf", ["JOBQUEUE_DISPATCH_BATCH"]),
        ("JOBQUEUE_DISPATCH_BATCH", "0", ["JOBQUEUE_DISPATCH_BATCH"]),
        ("JOBQUEUE_HEALTH_PORT", "nan", ["JOBQUEUE_HEALTH_PORT"]),
        ("JOBQUEUE_HEALTH_PORT", "70000", ["JOBQUEUE_HEALTH_PORT", "65535"]),
        ("JOBQUEUE_TICK_SECONDS", "nan", ["JOBQUEUE_TICK_SECONDS"]),
        ("JOBQUEUE_LEASE_SECONDS", "-1", ["JOBQUEUE_LEASE_SECONDS"]),
        ("JOBQUEUE_TIMEZONE", "Europe/" + "x" * 10_000, ["JOBQUEUE_TIMEZONE"]),
        ("JOBQUEUE_TIMEZONE", "../../etc/passwd", ["JOBQUEUE_TIMEZONE"]),
        ("DATABASE_URL", "garbage", ["DATABASE_URL", "not a database URL"]),
        ("DATABASE_URL", "mysql://u@h/db", ["DATABASE_URL", "'mysql'", "not supported"]),
        ("LOG_LEVEL", "chatty", ["LOG_LEVEL"]),
        (
            "JOBQUEUE_KEEP_ONE_OFF_ENTRIES",
            "maybe",
            ["JOBQUEUE_KEEP_ONE_OFF_ENTRIES", "true or false"],
        ),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(
    cli: Any, monkeypatch: pytest.MonkeyPatch, name: str, value: str, words: list[str]
) -> None:
    monkeypatch.setenv(name, value)
    err = refused(cli("entries", "list"), *words)
    assert len(err) < 400  # a 10,000-character value is not echoed back whole


def test_a_plain_postgresql_url_simply_works(
    pg_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = pg_database.replace("postgresql+psycopg2://", "postgresql://")
    monkeypatch.setenv("DATABASE_URL", plain)
    code, out, err = cli_runner(capsys)("entries", "list")
    assert code == 0, err and "code" in out
    monkeypatch.setenv("DATABASE_URL", plain.replace("postgresql://", "postgres://"))
    assert cli_runner(capsys)("entries", "list")[0] == 0


def test_a_refused_connection_is_named_as_such(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = cli_runner(capsys)
    # A refused connection is not a missing migration.
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    err = refused(cli("entries", "list"), "cannot reach the database at 127.0.0.1:1/nowhere")
    assert "migrate" not in err


def test_read_only_errors_are_described_as_such() -> None:
    from sqlalchemy.exc import OperationalError

    from runtime.db_errors import describe

    error = OperationalError(
        "INSERT", {}, sqlite3.OperationalError("attempt to write a readonly database")
    )
    message = describe(error, "sqlite:////data/jobqueue.db")
    assert "read-only" in message and "/data/jobqueue.db" in message and "migrate" not in message


def _hold_write_lock(
    settings: Settings, started: threading.Event, release: threading.Event, code: str
) -> None:
    """Another session holds the entry's row (PostgreSQL) or the SQLite write lock."""
    if settings.database_url.startswith("sqlite"):
        conn = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), timeout=1)
        conn.isolation_level = None
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE job_queue_entries SET description = 'busy' WHERE code = ?", (code,))
    else:
        dsn = settings.database_url.replace("postgresql+psycopg2://", "postgresql://")
        conn = psycopg2.connect(dsn)  # type: ignore[assignment]
        cur = conn.cursor()
        cur.execute("SELECT id FROM job_queue_entries WHERE code = %s FOR UPDATE", (code,))
    started.set()
    release.wait(30)
    conn.rollback()
    conn.close()


@pytest.mark.parametrize(
    "argv",
    [["hold", "E1"], ["entries", "set", "E1", "--priority", "5"], ["entries", "delete", "E1"]],
)
def test_a_locked_entry_is_refused_quickly_naming_what_is_busy(
    cli: Any, settings: Settings, argv: list[str]
) -> None:
    add_e1(cli)
    started, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(settings, started, release, "E1"))
    holder.start()
    try:
        assert started.wait(10)
        before = utcnow()
        err = refused(cli(*argv), "busy")
        assert (utcnow() - before).total_seconds() < 15
        assert "migrate" not in err
    finally:
        release.set()
        holder.join()


def test_listing_never_waits_for_a_sqlite_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'jq.db'}"
    upgrade(make_engine(url))
    monkeypatch.setenv("DATABASE_URL", url)
    cli = cli_runner(capsys)
    assert cli("entries", "add", "E1", "--job", "noop")[0] == 0
    started, release = threading.Event(), threading.Event()
    holder = threading.Thread(
        target=_hold_write_lock, args=(Settings(database_url=url), started, release, "E1")
    )
    holder.start()
    try:
        assert started.wait(10)
        before = utcnow()
        for argv in (["entries", "list"], ["entries", "show", "E1"], ["log", "E1"]):
            code, _out, err = cli(*argv)
            assert code == 0, err
        assert (utcnow() - before).total_seconds() < 2  # WAL: readers never wait
    finally:
        release.set()
        holder.join()


# Generated arguments for every entry subcommand (hypothesis): whatever they are, the
# command ends with 0 or a one-line 2, never a traceback, and a 2 changes nothing.
_texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=60,
)
_numbers = st.one_of(
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1.5", "1e400", "", " 7", "0x10", "٣"]),
)
_moments = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(
        ["9999-12-31T23:59-12:00", "0001-01-01T00:00+14:00", "none", "2026-02-30", "now"]
    ),
    _texts,
)
_windows = st.one_of(
    st.sampled_from(["08:00-18:00", "22:00-06:00+1", "08:00Z-18:00Z", "none", "24:00-25:00"]),
    _texts,
)
_options: dict[str, st.SearchStrategy[str]] = {
    "--minutes-between-runs": _numbers,
    "--maximum-attempts": _numbers,
    "--rerun-delay": _numbers,
    "--job-timeout": _numbers,
    "--inactivity-timeout": _numbers,
    "--priority": _numbers,
    "--earliest-start": _moments,
    "--expiration": _moments,
    "--window": _windows,
    "--weekdays": st.one_of(st.sampled_from(["mon-fri", "sat,sun", "all", "none"]), _texts),
    "--parameter": st.one_of(
        st.sampled_from(["seconds=1", "seconds=nan", "fail_times=1.5", "watch=item", "x"]),
        _texts,
    ),
    "--description": _texts,
    "--user": _texts,
    "--category": st.sampled_from(["SYNC", "none", "NOPE", "x" * 30]),
}
_codes = st.one_of(st.sampled_from(["E1", "E2", "NOPE"]), _texts)


@st.composite
def commands(draw: st.DrawFn) -> list[str]:
    kind = draw(
        st.sampled_from(
            ["add", "set", "hold", "ready", "run-now", "delete", "show", "log", "list", "category"]
        )
    )
    code = draw(_codes)
    if kind in ("add", "set"):
        chosen = draw(st.lists(st.sampled_from(sorted(_options)), max_size=4, unique=True))
        argv = ["entries", kind, code]
        if kind == "add":
            argv += ["--job", draw(st.sampled_from(["noop", "sleep", "fail", "idle", "nope"]))]
        if draw(st.booleans()):
            argv.append(draw(st.sampled_from(["--recurring", "--not-recurring"])))
        for option in chosen:
            argv += [option, draw(_options[option])]
        return argv
    if kind == "list":
        return ["entries", "list"]
    if kind == "category":
        return ["categories", "add", draw(_codes), "--description", draw(_texts)]
    if kind == "log":
        return ["log", code, "--limit", draw(_numbers)]
    return ["entries", kind, code] if kind in ("show", "delete") else [kind, code]


def test_generated_arguments_never_crash_and_a_refusal_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'prop.db'}"
    upgrade(make_engine(url))
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("JOBQUEUE_TIMEZONE", "Europe/Amsterdam")
    cli = cli_runner(capsys)
    assert cli("categories", "add", "SYNC")[0] == 0
    assert cli("entries", "add", "E1", "--job", "sleep", "--recurring")[0] == 0
    settings = Settings(database_url=url)

    @hyp_settings(
        max_examples=250,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(argv=commands())
    def run(argv: list[str]) -> None:
        before = dump(settings)
        try:
            code, _out, err = cli(*argv)
        except BaseException as exc:  # a crash that escaped main() entirely
            raise AssertionError(f"{argv!r} raised {exc!r}") from exc
        assert "Traceback" not in err, (argv, err)
        assert code in (0, 2), (argv, code, err)
        if code == 2:
            assert len(err.strip().splitlines()) == 1, (argv, err)
            assert dump(settings) == before, argv

    run()


def dump_all(url: str) -> list[tuple[Any, ...]]:
    """Every row of every table."""
    from domain.base import Base

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows: list[tuple[Any, ...]] = []
            for table in Base.metadata.sorted_tables:
                rows += [(table.name, *r) for r in conn.execute(table.select())]
            return sorted(rows, key=repr)
    finally:
        engine.dispose()


@st.composite
def local_commands(draw: st.DrawFn) -> list[str]:
    """The other families' commands that touch only the database (none that signs in to or
    sends to an outside service, reads a file or waits)."""
    text, number = draw(_texts), draw(_numbers)
    other = draw(_texts)
    return draw(
        st.sampled_from(
            [
                ["sales", "mappings"],
                ["sales", "couplings", "--table", text],
                ["sales", "resolve", text, other, "--keep", "local"],
                ["sales", "runs", "--limit", number],
                ["sales", "errors", "--limit", number],
                ["email", "accounts", "list"],
                ["email", "accounts", "default", text],
                ["email", "accounts", "rate-limit", text, number],
                ["email", "scenarios", "assign", text, other],
                ["email", "scenarios", "list"],
                ["email", "policy", "own", "--user", text],
                ["email", "outbox", "list"],
                ["email", "outbox", "retry", text],
                ["email", "sent", "list", "--as", text, "--limit", number],
                ["email-logging", "show"],
                ["email-logging", "enable"],
                ["email-logging", "disable"],
                ["interactions", "list", "--contact", text, "--limit", number],
                ["interactions", "to-opportunity", number],
                ["contacts", "add", text, "--name", other, "--email", text],
                ["contacts", "list"],
                ["salespersons", "add", text, "--name", other, "--email", text],
            ]
        )
    )


def test_generated_arguments_for_the_other_families_keep_the_promise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'prop.db'}"
    upgrade(make_engine(url))
    monkeypatch.setenv("DATABASE_URL", url)
    cli = cli_runner(capsys)

    @hyp_settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(argv=local_commands())
    def run(argv: list[str]) -> None:
        before = dump_all(url)
        code, _out, err = cli(*argv)
        assert "Traceback" not in err, (argv, err)
        assert code in (0, 2), (argv, code, err)
        if code == 2:
            assert len(err.strip().splitlines()) == 1, (argv, err)
            assert dump_all(url) == before, argv

    run()
