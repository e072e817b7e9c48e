"""The Zeta Router operator: watches ``ZetaRouter`` resources and model pods, reads
their load from Prometheus, and publishes weights as a routing table.

Not built yet: this package only carries its command-line entry point.
"""
