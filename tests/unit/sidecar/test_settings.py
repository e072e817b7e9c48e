"""The sidecar's settings and command line for client connections: caps and timeouts
(issue 7), their defaults, the refusals of values that cannot work, and the pure parts of
:mod:`zeta_sidecar.fd_limits` (the default cap) and :mod:`zeta_sidecar.connections` (the
throttled refusal log)."""

import logging
from pathlib import Path

import pytest

from zeta_sidecar import connections
from zeta_sidecar.cli import parse_args
from zeta_sidecar.connections import Limits, ThrottledLog
from zeta_sidecar.fd_limits import default_max_connections, listen_backlog, reserved_fds
from zeta_sidecar.settings import Settings

TABLE = Path("/tmp/routing.json")


def test_defaults_leave_the_per_client_cap_off_and_derive_the_overall_cap() -> None:
    settings, _ = parse_args(["--table-file", str(TABLE)])
    assert settings.max_connections is None  # derived from the fd limit at start-up
    assert settings.max_connections_per_client == 0  # one ingress address may carry all
    assert (settings.head_timeout, settings.body_timeout) == (10.0, 30.0)
    assert settings.idle_timeout > 600  # outlasts the load balancers in front


def test_the_flags_set_the_caps_and_timeouts() -> None:
    settings, _ = parse_args(
        [
            "--table-file", str(TABLE), "--max-connections", "500",
            "--max-connections-per-client", "20", "--head-timeout", "2.5",
            "--body-timeout", "4", "--idle-timeout", "75",
        ]
    )  # fmt: skip
    assert settings.max_connections == 500
    assert settings.max_connections_per_client == 20
    assert (settings.head_timeout, settings.body_timeout, settings.idle_timeout) == (2.5, 4, 75)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_connections", 0),
        ("max_connections_per_client", -1),
        ("head_timeout", 0.0),
        ("body_timeout", -1.0),
        ("idle_timeout", float("inf")),
        ("head_timeout", float("nan")),
    ],
)
def test_settings_refuse_caps_and_timeouts_that_cannot_work(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        Settings(table_file=TABLE, **{field: value})  # type: ignore[arg-type]


def test_the_command_line_refuses_a_bad_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--table-file", str(TABLE), "--head-timeout", "0"])
    assert "head_timeout must be a positive number" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("fds", "cap"),
    [(1024, (1024 - 256) // 2), (20_000, (20_000 - 128 - 1024) // 2), (100, 16)],
)
def test_the_default_cap_keeps_a_pod_connection_per_client_and_a_reserve(
    fds: int, cap: int
) -> None:
    assert default_max_connections(fds) == cap


@pytest.mark.parametrize(
    ("fds", "backlog"), [(100, 128), (1024, 128), (4096, 256), (20_000, 1024), (1 << 20, 1024)]
)
def test_the_listen_backlog_grows_with_the_fds_and_the_reserve_holds_it(
    fds: int, backlog: int
) -> None:
    assert listen_backlog(fds) == backlog
    assert reserved_fds(fds) == 128 + backlog


def test_limits_refuse_a_zero_cap() -> None:
    with pytest.raises(ValueError, match="connection caps"):
        Limits(max_connections=0)


class _FakeLoop:
    """Time and timers by hand: what :class:`ThrottledLog` uses of a loop."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, object, tuple[object, ...]]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: object, *args: object) -> "_FakeLoop":
        self.timers.append((when, callback, args))
        return self

    def cancel(self) -> None:
        self.timers.clear()

    def run_due(self) -> None:
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, callback, args in due:
            callback(*args)  # type: ignore[operator]


def test_a_flood_of_refusals_logs_one_line_then_one_summary_per_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = _FakeLoop()
    throttled = ThrottledLog(logging.WARNING, "refused {count}{window}; last from {last}")
    with caplog.at_level(logging.WARNING, logger=connections.logger.name):
        for i in range(100):
            loop.now = i * 0.05  # 100 refusals within 5 s
            throttled.event(loop, f"10.0.0.{i}")  # type: ignore[arg-type]
        assert [r.getMessage() for r in caplog.records] == ["refused 1; last from 10.0.0.0"]
        loop.now = connections.LOG_EVERY
        loop.run_due()
    assert [r.getMessage() for r in caplog.records][1:] == [
        f"refused 99 in the last {connections.LOG_EVERY:.0f} s; last from 10.0.0.99"
    ]
    assert loop.timers == []  # nothing held back: no timer left armed


def test_refusals_held_back_are_logged_when_the_listener_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = _FakeLoop()
    throttled = ThrottledLog(logging.WARNING, "refused {count}{window}; last from {last}")
    with caplog.at_level(logging.WARNING, logger=connections.logger.name):
        for client in ("a", "b", "c"):
            throttled.event(loop, client)  # type: ignore[arg-type]
        throttled.close()
    assert [r.getMessage() for r in caplog.records] == [
        "refused 1; last from a",
        "refused 2 lately; last from c",
    ]
    assert loop.timers == []
