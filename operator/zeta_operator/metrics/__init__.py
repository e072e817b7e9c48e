"""Load from Prometheus: the per-engine query table (:mod:`.queries`, pure), the
client that asks it off the event loop (:mod:`.client`, I/O), and the extraction of
per-pod loads from its answers (:mod:`.extraction`, pure)."""
