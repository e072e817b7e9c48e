"""Asking Prometheus: one instant query per signal, on threads of its own, bounded.

prometheus-api-client is synchronous (requests), so each query runs in a worker
thread. The threads belong to a small executor of each :class:`PrometheusSource`,
never the event loop's default one: the ConfigMap and status writes run there, and a
hung Prometheus must not queue them behind its queries.

Three bounds keep a hung Prometheus from starving anything:

- each request carries the spec's timeout (connect, and every read);
- the collection as a whole is awaited for that timeout and a little grace, after
  which the caller moves on (the thread may go on: a server that trickles a byte per
  read timeout, or a hanging DNS lookup, is not stopped by requests' timeout);
- at most ``max_queries`` queries are in flight: a collection that finds too few free
  slots fails at once with :class:`PrometheusStalled` rather than queueing behind
  threads that may never come back.

The signals of one router are asked concurrently; any failure fails the whole
collection, because weights from half the signals would be a different policy, not a
degraded one.

Errors::

    MetricsError            (reason: a CamelCase condition reason)
     ├── PrometheusUnreachable   connection refused, DNS, TLS
     ├── PrometheusTimeout       no answer within spec.prometheus.timeout
     ├── PrometheusStalled       earlier queries still hold every slot
     └── QueryFailed             an HTTP error or a malformed answer (bad PromQL)
"""

import asyncio
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from zeta_api import SIGNALS, Signal

__all__ = [
    "DEFAULT_MAX_QUERIES",
    "MetricsError",
    "PrometheusSource",
    "PrometheusStalled",
    "PrometheusTimeout",
    "PrometheusUnreachable",
    "QueryFailed",
    "Results",
    "reuse",
]

Results = dict[Signal, list[Mapping[str, Any]]]

DEFAULT_MAX_QUERIES = 2 * sum(1 for info in SIGNALS.values() if not info.optional)
"""Two collections' worth of load signals: one stalled collection still leaves room for
the next; when two are stuck, Prometheus is not coming back soon and waiting helps
nobody. The optional signals are asked only once the load has answered: a Prometheus
that starts to hang holds at most one collection's optional queries besides."""


class MetricsError(Exception):
    """Metrics could not be read; ``reason`` goes into the MetricsAvailable condition."""

    reason = "MetricsUnavailable"


class PrometheusUnreachable(MetricsError):
    reason = "PrometheusUnreachable"


class PrometheusTimeout(MetricsError):
    reason = "PrometheusTimeout"


class PrometheusStalled(MetricsError):
    reason = "PrometheusStalled"


class QueryFailed(MetricsError):
    reason = "QueryFailed"


def _read_timed_out(exc: requests.ConnectionError) -> bool:
    """Whether a connection error is a read timeout in disguise: with retries off,
    urllib3 wraps the timeout in MaxRetryError, which requests reports as a
    ConnectionError, so a hung Prometheus would read as an unreachable one."""
    wrapped = exc.args[0] if exc.args else None
    return isinstance(getattr(wrapped, "reason", None), ReadTimeoutError)


def _grace(timeout: float) -> float:
    """How long past ``timeout`` a collection is awaited: time to parse an answer that
    arrived just in time, not time for a second try."""
    return min(1.0, 0.1 + timeout / 10)


class PrometheusSource:
    """One Prometheus, as a router's spec names it. Keeps one HTTP session (connection
    reuse across intervals) and its own query threads; the router's loop replaces it
    when the URL or the timeout changes, and :meth:`close` lets go of both."""

    def __init__(self, url: str, *, timeout: float, max_queries: int = DEFAULT_MAX_QUERIES) -> None:
        if max_queries < 1:
            raise ValueError("max_queries must be at least 1")
        self.url = url
        self.timeout = timeout
        self.max_queries = max_queries
        # No retries inside the client: its default backs off for seconds, longer than
        # an interval; the next interval is the retry, and the ladder says what fails.
        self._client = PrometheusConnect(url=url, retry=Retry(total=0))
        self._executor = ThreadPoolExecutor(
            max_workers=max_queries, thread_name_prefix="zeta-prometheus"
        )
        # Counted here, not read from the executor: a thread is busy until its request
        # returns, whether or not anyone still awaits it.
        self._lock = threading.Lock()
        self._busy = 0

    @property
    def busy(self) -> int:
        """Queries in flight, including those nobody awaits any more."""
        with self._lock:
            return self._busy

    def _query(self, promql: str) -> list[Mapping[str, Any]]:
        try:
            result = self._client.custom_query(promql, timeout=self.timeout)
        except requests.Timeout as exc:
            raise PrometheusTimeout(f"no answer from {self.url} in {self.timeout:g} s") from exc
        except requests.ConnectionError as exc:
            if _read_timed_out(exc):
                raise PrometheusTimeout(f"no answer from {self.url} in {self.timeout:g} s") from exc
            raise PrometheusUnreachable(f"cannot reach {self.url}: {exc}") from exc
        except (PrometheusApiClientException, requests.RequestException, ValueError) as exc:
            raise QueryFailed(f"query {promql!r} failed: {exc}") from exc
        if not isinstance(result, list):
            raise QueryFailed(f"query {promql!r} returned {type(result).__name__}, not a vector")
        return result

    def _release(self, _: "Future[list[Mapping[str, Any]]]") -> None:
        # A done callback, not a ``finally`` in the thread: a query cancelled before
        # it started (the wait timed out, or the source closed) gives its slot back too.
        with self._lock:
            self._busy -= 1

    def _reserve(self, count: int) -> None:
        with self._lock:
            if self._busy + count > self.max_queries:
                raise PrometheusStalled(
                    f"{self._busy} earlier queries to {self.url} are still running past "
                    f"their {self.timeout:g} s timeout; not queueing {count} more behind them"
                )
            self._busy += count

    async def fetch(self, queries: Mapping[Signal, str]) -> Results:
        """Every signal's instant vector, or a :class:`MetricsError`."""
        signals = list(queries)
        self._reserve(len(signals))
        futures: list[Future[list[Mapping[str, Any]]]] = []
        try:
            for signal in signals:
                future = self._executor.submit(self._query, queries[signal])
                future.add_done_callback(self._release)
                futures.append(future)
        except RuntimeError as exc:  # closed meanwhile: the router is going away
            with self._lock:
                self._busy -= len(signals) - len(futures)
            raise PrometheusUnreachable(f"the client of {self.url} is closed") from exc
        waiting = [asyncio.wrap_future(f) for f in futures]
        try:
            answers = await asyncio.wait_for(
                asyncio.gather(*waiting, return_exceptions=True),
                self.timeout + _grace(self.timeout),
            )
        except TimeoutError as exc:
            raise PrometheusTimeout(f"no answer from {self.url} in {self.timeout:g} s") from exc
        for answer in answers:
            if isinstance(answer, MetricsError):
                raise answer
            if isinstance(answer, BaseException):
                raise QueryFailed(f"query to {self.url} failed: {answer!r}") from answer
        return dict(zip(signals, answers, strict=True))

    def close(self) -> None:
        """Stop taking queries; threads still hung finish (or fail) on their own."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()


def reuse(
    source: PrometheusSource | None, url: str, timeout: float, *, max_queries: int
) -> PrometheusSource:
    """``source`` if it still asks ``url`` with ``timeout``; else a new source, and the
    old one closed (its session and threads are let go)."""
    if source is not None and (source.url, source.timeout) == (url, timeout):
        return source
    if source is not None:
        source.close()
    return PrometheusSource(url, timeout=timeout, max_queries=max_queries)
