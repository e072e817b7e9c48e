"""A local Kubernetes testbed on one machine without containers.

Real etcd, kube-apiserver, kube-controller-manager and Prometheus run as processes
built from their official Go modules; model pods are Pod objects whose status is
patched to Running with a loopback IP where a simulated model server (``zeta-sim``)
listens. Used by the tests, the demo and the benchmarks; never by the product.
"""
