"""Command line of `zeta-operator`."""

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="zeta-operator",
        description="Zeta Router operator. Not implemented yet: only this help exists.",
    )
    parser.parse_args(argv)
    parser.print_help()
    return 0
