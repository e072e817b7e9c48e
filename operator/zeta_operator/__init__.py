"""The Zeta Router operator: watches ``ZetaRouter`` resources and model pods, reads
their load from Prometheus, and publishes weights as a routing table.

One router's cycle is a straight line, collect -> extract -> decide -> publish ->
report; each module has one job, pure at the bottom, I/O at the edges:

- pure, no I/O and no clock: :mod:`.snapshots` (typed values: pod records and loads),
  :mod:`.discovery` (which pods serve which model), :mod:`.metrics.queries` (PromQL
  per router, from :data:`zeta_api.SIGNALS`), :mod:`.metrics.extraction` (answers to
  per-pod loads), :mod:`.weighting` (loads to weights), :mod:`.ladder` (the
  degradation ladder), :mod:`.deciding` (a cycle's decision: weights, rung, Events,
  and the outcome it reports), :mod:`.tables` (the routing table), :mod:`.reporting`
  (status and conditions); :mod:`.settings` (the process's settings).
- I/O: :mod:`.metrics.client` (Prometheus, off the event loop), :mod:`.collecting`
  (the collect and extract stages: one router's Prometheus), :mod:`.classifiers` (the
  virtual models' classifiers, asked once per interval), :mod:`.apiserver` (the
  ConfigMap and status calls), :mod:`.publishing` (the publish and report stages:
  write only what changed), :mod:`.reconciling` (one router's cycle, tying the stages
  together), :mod:`.looping` (when cycles run: interval, wake-ups, staleness),
  :mod:`.runtime` (what the handlers share), :mod:`.handlers` (thin kopf handlers),
  :mod:`.cli` (``zeta-operator``).
"""
