"""How an exchange with a pod fails: a tree of built-in exceptions.

::

    ConnectionError
    ├── ConnectFailed      no connection could be opened; the request never left, so it
    │                      is safe to retry elsewhere
    ├── Disconnected       the connection closed mid-exchange (``before_response`` says
    │                      whether any response byte had come)
    └── ProtocolError      the pod's answer is not HTTP/1.1 as RFC 9112 frames it
    TimeoutError           connect, head or body deadline passed

They live apart from :mod:`~zeta_sidecar.framing` and :mod:`~zeta_sidecar.upstream`, which
raise them, because those two are compiled by mypyc, which cannot compile a subclass of
``OSError``; this module stays pure Python in every build.
"""

__all__ = ["ConnectFailed", "Disconnected", "ProtocolError"]


class ConnectFailed(ConnectionError):
    """No connection to the pod could be opened."""


class Disconnected(ConnectionError):
    """The connection closed before the response was complete."""

    def __init__(self, message: str, *, before_response: bool) -> None:
        super().__init__(message)
        self.before_response = before_response


class ProtocolError(ConnectionError):
    """The pod's answer could not be read as HTTP/1.1."""
