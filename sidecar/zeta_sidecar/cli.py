"""Command line of `zeta-sidecar`."""

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="zeta-sidecar",
        description="Zeta Router sidecar. Not implemented yet: only this help exists.",
    )
    parser.parse_args(argv)
    parser.print_help()
    return 0
