"""The Zeta Router sidecar: an OpenAI-compatible proxy that balances requests over the
pods of the routing table.

Modules, bottom up, one job each (pure modules do no I/O and read no clock; time and
randomness are passed in):

Pure:

- :mod:`~zeta_sidecar.settings`: one process's knobs, from the command line;
- :mod:`~zeta_sidecar.errors`: the OpenAI-style errors the proxy answers itself;
- :mod:`~zeta_sidecar.headers`: which headers cross the proxy, and a pod request's head;
- :mod:`~zeta_sidecar.bodies`: a request body parsed once, the served model name spliced in;
- :mod:`~zeta_sidecar.picking`: one pod by weight: weighted P2C, smooth WRR, weighted random;
- :mod:`~zeta_sidecar.complexity`: how hard a request looks (its trained constants:
  :mod:`~zeta_sidecar.complexity_model`, written by ``bench/complexity/train.py``);
- :mod:`~zeta_sidecar.resilience`: the retry budget and a pod's outlier record;
- :mod:`~zeta_sidecar.pods`: a model's pods and the effective weight of each now
  (warm-up, ejection, the pod a retry leaves);
- :mod:`~zeta_sidecar.limits`: tenants' token buckets, settled by the usage pods report.

State, shared across requests:

- :mod:`~zeta_sidecar.table_store`: tables validated, compiled and swapped in, the last
  good one kept, pods' state carried across tables;
- :mod:`~zeta_sidecar.affinity_keys`: a model's affinity plan and a request's prefix,
  placement and session keys;
- :mod:`~zeta_sidecar.affinity`: the load bound, rendezvous placement, and the bounded
  index of where this replica sent what;
- :mod:`~zeta_sidecar.routing`: request -> model -> pod: virtual models, spillover,
  saturation, affinity within the load bound;
- :mod:`~zeta_sidecar.traffic`: a request's class and tenant;
- :mod:`~zeta_sidecar.admission`: the wait queue of a saturated model, by priority;
- :mod:`~zeta_sidecar.metrics`: the Prometheus metrics;
- :mod:`~zeta_sidecar.merged_metrics`: several workers' metrics merged into one (pure);
- :mod:`~zeta_sidecar.gateway`: everything one sidecar shares, and the outcomes of
  upstream tries (ejection, the prober).

I/O at the edges:

- :mod:`~zeta_sidecar.pod_errors`: how an exchange with a pod fails;
- :mod:`~zeta_sidecar.framing`: a pod's response parsed as it arrives (llhttp, limits);
- :mod:`~zeta_sidecar.upstream`: the pods' keep-alive connections and reading answers
  within deadlines;
- :mod:`~zeta_sidecar.proxy`: the traffic handlers: parse, resolve, admit;
- :mod:`~zeta_sidecar.forwarding`: a request's tries on pods, retries within the budget;
- :mod:`~zeta_sidecar.relay`: a pod's answer to the client: whole, in pieces or as a stream;
- :mod:`~zeta_sidecar.classifier`: an external tier classifier, asked within a timeout;
- :mod:`~zeta_sidecar.file_source`: the table from a mounted file;
- :mod:`~zeta_sidecar.configmap_source`: the table from a ConfigMap, list then watch;
- :mod:`~zeta_sidecar.kube_credentials`: the apiserver's credentials, refreshed and reloaded;
- :mod:`~zeta_sidecar.fd_limits`: the open-files limit, and the connection cap from it;
- :mod:`~zeta_sidecar.cpu_quota`: the CPUs the container may use (``--workers``' default);
- :mod:`~zeta_sidecar.connections`: client connection caps per listener (a gate);
- :mod:`~zeta_sidecar.http_server`: the traffic port's HTTP/1.1 server (llhttp on an
  asyncio protocol) behind a gate, with head, body and idle timeouts;
- :mod:`~zeta_sidecar.guarded_server`: the admin port's: aiohttp's server behind a gate,
  with the same timeouts;
- :mod:`~zeta_sidecar.admin`: the admin port: metrics, health, readiness, the table;
- :mod:`~zeta_sidecar.app`: the traffic server and the gateway's lifetime; both runners;
- :mod:`~zeta_sidecar.group_admin`: a worker group's admin port, asking every worker;
- :mod:`~zeta_sidecar.supervisor`: ``--workers``: forked workers on one port, drained
  together;
- :mod:`~zeta_sidecar.cli`: ``zeta-sidecar`` (``python -m zeta_sidecar``): parse, serve,
  drain on SIGTERM.

Apart: :mod:`~zeta_sidecar.testing`, routing tables in a line for tests and benchmarks;
:mod:`~zeta_sidecar.build_form`, whether the modules compiled by mypyc or their pure-Python
source run (``ZETA_PURE_PYTHON=1`` forces the source).
"""

from zeta_sidecar.build_form import apply_switch

# Before any other module of the package is imported: compiled ones cannot be unloaded.
apply_switch()
