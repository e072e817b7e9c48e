"""The Zeta Router operator: watches ``ZetaRouter`` resources and model pods, reads
their load from Prometheus, and publishes weights as a routing table.

Layers, pure at the bottom, I/O at the edges:

- pure, no I/O and no clock: :mod:`.snapshots` (typed values), :mod:`.discovery`
  (which pods serve which model), :mod:`.metrics.queries` (PromQL per engine, as data),
  :mod:`.metrics.extraction` (answers to per-pod loads), :mod:`.weighting` (loads to
  weights), :mod:`.ladder` (the degradation ladder), :mod:`.tables` (the routing table),
  :mod:`.reporting` (status and conditions); :mod:`.settings`.
- I/O: :mod:`.metrics.client` (Prometheus, off the event loop), :mod:`.publishing`
  (ConfigMap and status writes), :mod:`.reconciling` (one router's loop, tying it all
  together), :mod:`.handlers` (thin kopf handlers), :mod:`.cli` (``zeta-operator``).
"""
