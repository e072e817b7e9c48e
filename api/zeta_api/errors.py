"""The errors the contract raises, one per document a caller may be handed.

::

    ValueError
    └── ZetaApiError          anything this package refuses
        ├── DurationError     a duration string that is not Go-style ("2s", "1m30s")
        ├── SpecError         a ZetaRouter spec that breaks the schema or a cross-field rule
        ├── StatusError       a ZetaRouter status that does not read back
        └── TableError        a routing table the sidecar must refuse (keep the last good one)

They derive from :class:`ValueError` because each one means "this value is wrong",
and callers that already guard parsing with ``except ValueError`` keep working.

Every message starts with the path of the offending field, in the form the
Kubernetes apiserver uses (``spec.models[1].capacity: must be >= 1, got 0``), so an
operator condition or a sidecar log line points at the exact spot to fix.
"""

__all__ = ["DurationError", "SpecError", "StatusError", "TableError", "ZetaApiError"]


class ZetaApiError(ValueError):
    """A value this package refuses; the message names the field and the rule."""


class DurationError(ZetaApiError):
    """A duration string that is not a Go-style duration within range."""


class SpecError(ZetaApiError):
    """A ``ZetaRouter`` spec the operator cannot serve as written."""


class StatusError(ZetaApiError):
    """A ``ZetaRouter`` status that does not match the schema (read back by the operator)."""


class TableError(ZetaApiError):
    """A routing table document that is malformed, unsupported or inconsistent."""
