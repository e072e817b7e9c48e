"""The Zeta Router sidecar: an OpenAI-compatible proxy that balances requests over the
pods of the routing table.

Layers, bottom up (pure modules do no I/O and read no clock; time and randomness are
passed in):

- pure: :mod:`~zeta_sidecar.settings` (one process's knobs), :mod:`~zeta_sidecar.errors`
  (OpenAI-style error answers), :mod:`~zeta_sidecar.headers` (which headers cross),
  :mod:`~zeta_sidecar.picking` (weighted P2C, smooth WRR, weighted random),
  :mod:`~zeta_sidecar.complexity` and its trained :mod:`~zeta_sidecar.complexity_model`
  (how hard a request looks), :mod:`~zeta_sidecar.resilience` (retry budget, ejection),
  :mod:`~zeta_sidecar.limits` (token buckets per tenant);
- state: :mod:`~zeta_sidecar.tables` (validated tables compiled into pools of pods,
  swapped atomically, the last good one kept), :mod:`~zeta_sidecar.routing` (request ->
  model -> pod, spillover, saturation), :mod:`~zeta_sidecar.traffic` (a request's class
  and tenant), :mod:`~zeta_sidecar.admission` (the wait queue of a saturated model) and
  :mod:`~zeta_sidecar.gateway` (everything one sidecar shares across requests);
- I/O at the edges: :mod:`~zeta_sidecar.upstream` (the pods' keep-alive HTTP/1.1
  connections, answers parsed by llhttp), :mod:`~zeta_sidecar.proxy` (the streaming
  pass-through), :mod:`~zeta_sidecar.classifier` (an external tier classifier),
  :mod:`~zeta_sidecar.sources` (file and ConfigMap watchers),
  :mod:`~zeta_sidecar.connections` (client connection caps and timeouts),
  :mod:`~zeta_sidecar.metrics`, :mod:`~zeta_sidecar.app` (wiring) and
  :mod:`~zeta_sidecar.cli` (``zeta-sidecar``);
- :mod:`~zeta_sidecar.testing`: routing tables in a line, for tests and benchmarks.
"""
