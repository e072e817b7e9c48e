"""A local Kubernetes testbed on one machine without containers.

Real etcd, kube-apiserver, kube-controller-manager and Prometheus run as processes
built from their official Go modules; model pods are Pod objects whose status is
patched to Running with a loopback IP where a simulated model server (``zeta-sim``)
listens. Used by the tests, the demo and the benchmarks; never by the product.

Modules: :mod:`~zeta_testbed.testbed` (the testbed as one object, its state on disk);
:mod:`~zeta_testbed.controlplane`, :mod:`~zeta_testbed.pki`,
:mod:`~zeta_testbed.prometheus`, :mod:`~zeta_testbed.pods` and :mod:`~zeta_testbed.tools`
(its parts: command lines, certificates, scraping, pods without a kubelet, the Go builds);
:mod:`~zeta_testbed.processes` (its detached, recorded processes); :mod:`~zeta_testbed.cli`
(``zeta-testbed``). For what runs on it: :mod:`~zeta_testbed.zetarouter` (the CRD and a
``ZetaRouter`` declared), :mod:`~zeta_testbed.sidecar` (a ``zeta-sidecar`` process and its
command line), :mod:`~zeta_testbed.harness` (ports, HTTP, polling, child processes),
:mod:`~zeta_testbed.loadgen` (bounded OpenAI load), :mod:`~zeta_testbed.demo`
(``make demo``); :mod:`~zeta_testbed.sim` is the simulated model server (``zeta-sim``).
"""
