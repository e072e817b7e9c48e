"""The command line: flags into a typed config, and a process that stops on SIGTERM."""

import asyncio
import re
import signal
import socket
import sys

import aiohttp
import pytest

from zeta_testbed.sim.cli import parse_options
from zeta_testbed.sim.presets import PRESETS

pytestmark = pytest.mark.unit


class TestFlags:
    def test_defaults(self):
        options = parse_options([])
        assert (options.host, options.port, options.log_level) == ("127.0.0.1", 8000, "INFO")
        assert options.config.preset is PRESETS["7b"]
        assert options.config.model_name == "sim-7b"
        assert options.config.time_scale == 1.0
        assert not options.config.legacy_kv_metric

    def test_every_flag_reaches_the_config(self):
        options = parse_options(
            [
                "--preset=14b",
                "--model=qwen",
                "--served-model-name=alias",
                "--capacity=3",
                "--time-scale=10",
                "--legacy-kv-metric",
                "--seed=9",
                "--log-level=debug",
                "--port=9000",
            ]
        )
        config = options.config
        assert config.preset is PRESETS["14b"]
        assert config.accepted_models == ("qwen", "alias")
        assert (config.capacity, config.time_scale, config.seed) == (3, 10.0, 9)
        assert config.legacy_kv_metric
        assert (options.port, options.log_level) == (9000, "DEBUG")

    @pytest.mark.parametrize(
        "flag", ["--preset=70b", "--capacity=0", "--time-scale=0", "--time-scale=-1"]
    )
    def test_bad_flags_exit_with_usage_error(self, flag, capsys):
        with pytest.raises(SystemExit) as caught:
            parse_options([flag])
        assert caught.value.code == 2
        assert "zeta-sim" in capsys.readouterr().err


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "zeta_testbed.sim.cli",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


class TestProcess:
    async def test_serves_then_exits_zero_on_sigterm(self):
        process = await spawn("--port=0", "--time-scale=100")
        try:
            assert process.stderr is not None
            line = await asyncio.wait_for(process.stderr.readline(), timeout=15)
            match = re.search(rb"on (http://127\.0\.0\.1:\d+)", line)
            assert match, line
            url = match.group(1).decode()
            async with aiohttp.ClientSession() as session, session.get(f"{url}/health") as response:
                assert response.status == 200
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), timeout=10) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    async def test_a_taken_port_exits_one_without_a_traceback(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            process = await spawn(f"--port={taken.getsockname()[1]}")
            try:
                _, stderr = await asyncio.wait_for(process.communicate(), timeout=15)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        assert process.returncode == 1
        assert b"cannot listen" in stderr
        assert b"Traceback" not in stderr
