"""The Zeta Router sidecar: an OpenAI-compatible proxy that balances requests over the
pods of the routing table.

Layers, bottom up (pure modules do no I/O and read no clock; time and randomness are
passed in):

- pure: :mod:`~zeta_sidecar.settings`, :mod:`~zeta_sidecar.errors`,
  :mod:`~zeta_sidecar.headers`, :mod:`~zeta_sidecar.picking`,
  :mod:`~zeta_sidecar.complexity`, :mod:`~zeta_sidecar.resilience`;
- state: :mod:`~zeta_sidecar.tables` (validated tables compiled into pools of pods,
  swapped atomically, the last good one kept) and :mod:`~zeta_sidecar.routing`
  (request -> model -> pod, spillover, shedding);
- I/O at the edges: :mod:`~zeta_sidecar.sources` (file and ConfigMap watchers),
  :mod:`~zeta_sidecar.proxy` (the streaming pass-through), :mod:`~zeta_sidecar.metrics`,
  :mod:`~zeta_sidecar.app` (wiring) and :mod:`~zeta_sidecar.cli` (``zeta-sidecar``).
"""
