"""Asking Prometheus: one instant query per signal, off the event loop.

prometheus-api-client is synchronous (requests), so each query runs in a worker
thread (``asyncio.to_thread``) with the spec's timeout on the HTTP request itself,
so a hung Prometheus cannot pile up threads. The signals of one router are asked
concurrently; any failure fails the whole collection, because weights from half the
signals would be a different policy, not a degraded one.

Errors::

    MetricsError            (reason: a CamelCase condition reason)
     ├── PrometheusUnreachable   connection refused, DNS, TLS
     ├── PrometheusTimeout       no answer within spec.prometheus.timeout
     └── QueryFailed             an HTTP error or a malformed answer (bad PromQL)
"""

import asyncio
from collections.abc import Mapping
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from zeta_api import Signal

__all__ = [
    "MetricsError",
    "PrometheusSource",
    "PrometheusTimeout",
    "PrometheusUnreachable",
    "QueryFailed",
]

Results = dict[Signal, list[Mapping[str, Any]]]


class MetricsError(Exception):
    """Metrics could not be read; ``reason`` goes into the MetricsAvailable condition."""

    reason = "MetricsUnavailable"


class PrometheusUnreachable(MetricsError):
    reason = "PrometheusUnreachable"


class PrometheusTimeout(MetricsError):
    reason = "PrometheusTimeout"


class QueryFailed(MetricsError):
    reason = "QueryFailed"


class PrometheusSource:
    """One Prometheus, as a router's spec names it. Keeps one HTTP session (connection
    reuse across intervals); the router's loop replaces it when the URL changes."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        # No retries inside the client: its default backs off for seconds, longer than
        # an interval; the next interval is the retry, and the ladder says what fails.
        self._client = PrometheusConnect(url=url, retry=Retry(total=0))

    def _query(self, promql: str) -> list[Mapping[str, Any]]:
        try:
            result = self._client.custom_query(promql, timeout=self.timeout)
        except requests.Timeout as exc:
            raise PrometheusTimeout(f"no answer from {self.url} in {self.timeout:g} s") from exc
        except requests.ConnectionError as exc:
            raise PrometheusUnreachable(f"cannot reach {self.url}: {exc}") from exc
        except (PrometheusApiClientException, requests.RequestException, ValueError) as exc:
            raise QueryFailed(f"query {promql!r} failed: {exc}") from exc
        if not isinstance(result, list):
            raise QueryFailed(f"query {promql!r} returned {type(result).__name__}, not a vector")
        return result

    async def fetch(self, queries: Mapping[Signal, str]) -> Results:
        """Every signal's instant vector, or a :class:`MetricsError`."""
        signals = list(queries)
        tasks = [asyncio.to_thread(self._query, queries[s]) for s in signals]
        try:
            # The HTTP timeout bounds each thread; this bounds the wait as a whole.
            answers = await asyncio.wait_for(asyncio.gather(*tasks), self.timeout * 2 + 1)
        except TimeoutError as exc:
            raise PrometheusTimeout(f"no answer from {self.url} in {self.timeout:g} s") from exc
        return dict(zip(signals, answers, strict=True))

    def close(self) -> None:
        self._client.close()
