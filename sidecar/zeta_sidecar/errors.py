"""OpenAI-style errors: ``{"error": {"message", "type", "param", "code"}}`` with a status.

Tree::

    ApiError                 any request the proxy answers itself
    ├── BadRequest           400, malformed JSON or body
    ├── ModelNotFound        404, missing or unknown model
    ├── RequestTimeout       408, the client sent its request head or body too slowly
    ├── BodyTooLarge         413
    ├── ExpectationFailed    417, an ``Expect`` other than ``100-continue``
    ├── NoCapacity           429, a sheddable request to a saturated model (Retry-After)
    ├── RateLimited          429, the tenant is over its rate limit (x-ratelimit-*)
    ├── NoHealthyPod         503, no table yet, or no pod to send to
    ├── UpstreamFailed       502, the pod failed or was unreachable
    └── UpstreamTimeout      504, the pod did not answer in time
"""

import json
import math
from typing import TYPE_CHECKING, ClassVar

from aiohttp import web

if TYPE_CHECKING:
    from zeta_sidecar.limits import Refusal

__all__ = [
    "JSON_TYPE",
    "ApiError",
    "BadRequest",
    "BodyTooLarge",
    "ExpectationFailed",
    "MethodNotAllowed",
    "ModelNotFound",
    "NoCapacity",
    "NoHealthyPod",
    "RateLimited",
    "RequestTimeout",
    "UnknownRoute",
    "UpstreamFailed",
    "UpstreamTimeout",
    "error_body",
    "sse_error_event",
]


JSON_TYPE = ("Content-Type", "application/json")
"""The header of every JSON answer."""


class ApiError(Exception):
    """An error the proxy answers itself, OpenAI-style."""

    status: ClassVar[int] = 500
    kind: ClassVar[str] = "server_error"
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self._headers = headers

    def headers(self) -> dict[str, str]:
        """Extra response headers."""
        return self._headers or {}

    def body(self) -> bytes:
        """The JSON body of the answer."""
        return error_body(self.message, kind=self.kind, code=self.code, param=self.param)

    def parts(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """(status, headers, body) of the answer, for either port's server to wrap: the
        traffic port's :class:`~zeta_sidecar.http_server.Answer`, aiohttp's
        :meth:`response` on the admin port."""
        return self.status, [JSON_TYPE, *self.headers().items()], self.body()

    def response(self) -> web.Response:
        """The answer as aiohttp's (the admin port)."""
        status, headers, body = self.parts()
        return web.Response(status=status, body=body, headers=headers)


class BadRequest(ApiError):
    status, kind, code = 400, "invalid_request_error", "invalid_request"


class ModelNotFound(ApiError):
    status, kind, code = 404, "invalid_request_error", "model_not_found"


class UnknownRoute(ApiError):
    status, kind, code = 404, "invalid_request_error", "unknown_url"


class MethodNotAllowed(ApiError):
    status, kind, code = 405, "invalid_request_error", "method_not_allowed"

    def __init__(self, message: str, *, allow: tuple[str, ...]) -> None:
        super().__init__(message, headers={"Allow": ",".join(allow)})


class RequestTimeout(ApiError):
    status, kind, code = 408, "invalid_request_error", "request_timeout"


class BodyTooLarge(ApiError):
    status, kind, code = 413, "invalid_request_error", "request_too_large"


class ExpectationFailed(ApiError):
    status, kind, code = 417, "invalid_request_error", "expectation_failed"


class NoCapacity(ApiError):
    status, kind, code = 429, "rate_limit_error", "no_capacity"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class RateLimited(ApiError):
    """OpenAI's rate-limit answer: ``type`` says which limit, headers say when to retry."""

    status, kind, code = 429, "requests", "rate_limit_exceeded"

    def __init__(self, refusal: "Refusal") -> None:
        what = "requests per second" if refusal.kind == "requests" else "tokens per minute"
        retry = max(1, math.ceil(refusal.retry_after))
        super().__init__(
            f"Rate limit reached for {what}. Please try again in {refusal.retry_after:.3g}s.",
            headers={"Retry-After": str(retry), **refusal.headers},
        )
        self.refusal = refusal

    def body(self) -> bytes:
        # The error's type names the limit hit (requests or tokens), as OpenAI's does.
        return error_body(self.message, kind=self.refusal.kind, code=self.code)


class NoHealthyPod(ApiError):
    status, kind, code = 503, "server_error", "no_healthy_upstream"


class UpstreamFailed(ApiError):
    status, kind, code = 502, "server_error", "upstream_failed"


class UpstreamTimeout(ApiError):
    status, kind, code = 504, "server_error", "upstream_timeout"


def error_body(message: str, *, kind: str, code: str, param: str | None = None) -> bytes:
    """The JSON body of an error answer."""
    error = {"message": message, "type": kind, "param": param, "code": code}
    return json.dumps({"error": error}, separators=(",", ":")).encode()


def sse_error_event(message: str, *, code: str = "upstream_failed") -> bytes:
    """An SSE event that ends a stream cut after its first byte (the OpenAI SDK raises it)."""
    return b"data: " + error_body(message, kind="server_error", code=code) + b"\n\n"
