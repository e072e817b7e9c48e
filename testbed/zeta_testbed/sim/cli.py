"""``zeta-sim``: the command line, logging, and the process's lifetime.

Parses flags into a typed ``SimConfig`` (the ``argparse`` namespace goes no further),
serves until SIGTERM or SIGINT, then shuts down: listening stops, requests in flight
are aborted, the engine stops, and the process exits 0.
"""

import argparse
import asyncio
import logging
import signal
from dataclasses import dataclass

from zeta_testbed.sim.caching import DEFAULT_BLOCK_SIZE
from zeta_testbed.sim.presets import DEFAULT_PRESET, PRESETS
from zeta_testbed.sim.server import SimConfig, start

__all__ = ["Options", "main", "parse_options"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """The parsed command line."""

    config: SimConfig
    host: str
    port: int
    log_level: str


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zeta-sim",
        description="A simulated vLLM-style, OpenAI-compatible model server.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=DEFAULT_PRESET,
        help="model size: sets capacity, step times and KV capacity",
    )
    parser.add_argument("--model", help="model id to serve (default: sim-<preset>)")
    parser.add_argument("--served-model-name", help="another name the model answers to")
    parser.add_argument(
        "--capacity", type=_positive_int, help="concurrent sequences (default: the preset's)"
    )
    parser.add_argument(
        "--time-scale",
        type=_positive_float,
        default=1.0,
        help="speed-up over real time; 10 runs everything ten times faster",
    )
    parser.add_argument(
        "--legacy-kv-metric",
        action="store_true",
        help="export vllm:gpu_cache_usage_perc instead of vllm:kv_cache_usage_perc",
    )
    parser.add_argument(
        "--prefix-caching",
        "--enable-prefix-caching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep prompt blocks in the KV cache and skip the prefill of a cached prefix, "
        "as vLLM V1 does by default (--no-prefix-caching: the sim before it had a cache)",
    )
    parser.add_argument(
        "--block-size",
        type=_positive_int,
        default=DEFAULT_BLOCK_SIZE,
        help="tokens per KV-cache block, the prefix cache's unit (default: %(default)s)",
    )
    parser.add_argument(
        "--scheduling-policy",
        choices=["fcfs", "priority"],
        default="fcfs",
        help="vLLM's: fcfs, or priority (requests' `priority`, lower first; a better one "
        "preempts a running one when the batch is full)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for output lengths and faults")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="DEBUG also logs every request",
    )
    return parser


def parse_options(argv: list[str] | None) -> Options:
    """Parse the command line (``sys.argv[1:]`` if ``argv`` is None); exits on bad flags."""
    args = _parser().parse_args(argv)
    config = SimConfig(
        preset=PRESETS[args.preset],
        model=args.model,
        served_model_name=args.served_model_name,
        capacity=args.capacity,
        time_scale=args.time_scale,
        legacy_kv_metric=args.legacy_kv_metric,
        prefix_caching=args.prefix_caching,
        block_size=args.block_size,
        priority_scheduling=args.scheduling_policy == "priority",
        seed=args.seed,
    )
    return Options(config=config, host=args.host, port=args.port, log_level=args.log_level)


async def _serve(options: Options) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        sim = await start(
            options.config,
            host=options.host,
            port=options.port,
            access_log=options.log_level == "DEBUG",
        )
    except OSError as exc:
        # Typically the port is taken: one line, not a traceback, for whoever launched us.
        logger.error("cannot listen on %s:%d: %s", options.host, options.port, exc)
        return 1
    config = options.config
    logger.info(
        "serving %s (preset %s, capacity %d, time scale %g, prefix caching %s) on %s",
        config.model_name,
        config.preset.name,
        sim.state.engine.capacity,
        config.time_scale,
        "on" if config.prefix_caching else "off",
        sim.url,
    )
    try:
        await stop.wait()
        logger.info("shutting down")
    finally:
        await sim.aclose()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the sim until SIGTERM or SIGINT; returns the process exit status."""
    options = parse_options(argv)
    logging.basicConfig(
        level=options.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # SIGINT is handled inside; this catches one that lands before the handler is set.
    try:
        return asyncio.run(_serve(options))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # ``python -m zeta_testbed.sim.cli``: a direct child process, which signals reach
    # without an intermediate launcher script.
    raise SystemExit(main())
