"""The Zeta Router sidecar: an OpenAI-compatible proxy that balances requests over the
pods of the routing table.

Not built yet: this package only carries its command-line entry point.
"""
