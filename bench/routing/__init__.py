"""Routing benchmark: Zeta against round robin, random, least-request, the naive argmin,
static complexity tiers and peer routers, on the same simulated pods and the same trace.

Run it with ``python bench/routing/run.py`` (see ``bench/README.md``).
"""
