"""How throughput scales with instances on one port (`make bench-scale`).

Runs 1, 2, ... N `llm-proxy serve` instances with `server.reuse_port` on one port (the kernel
spreads connections), in interleaved rounds against the same mock upstream, and reports
requests/s and CPU per request (summed over the instances) for each count, as ratios to one
instance measured in the same run. Instances are not pinned: on a machine with few cores the
load generator and the mock compete with them, which is part of the answer.

    python -m tests.perf.scale [--instances 2] [--rounds 3] [--duration 5] [--connections 128]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.perf.bench import KEY, Proc, free_port, run_wrk, spawn, wait_health


@contextlib.contextmanager
def instances(count: int, config: Path, port: int, tmp: Path) -> Iterator[list[Proc]]:
    cmd = [sys.executable, "-m", "llm_proxy", "serve", "--config", str(config)]
    with contextlib.ExitStack() as stack:
        procs = []
        for i in range(count):
            procs.append(
                stack.enter_context(
                    spawn(f"proxy{i}", cmd, "0-1", port, tmp / f"proxy{i}.log", "/health")
                )
            )
        wait_health(procs[0].url, "/health")
        time.sleep(1.0)  # the shared port answers once any instance has bound it: all have now
        yield procs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=128)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="llm-proxy-scale-"))
    mock_port, port = free_port(), free_port()
    config = tmp / "scale.yaml"
    config.write_text(
        f"""
providers:
  - name: bench
    api_base: http://127.0.0.1:{mock_port}/v1
    api_key: sk-upstream-bench
    model_mapping: {{"gpt-4o-mini": null}}
master_keys:
  - {{name: bench, key: {KEY}}}
server: {{host: 127.0.0.1, port: {port}, reuse_port: true}}
request_log: {{enabled: false}}
"""
    )
    mock_cmd = [sys.executable, "-m", "llm_proxy", "mock-upstream", "--port", str(mock_port)]
    counts = list(range(1, args.instances + 1))
    rps: dict[int, list[float]] = {n: [] for n in counts}
    cpu: dict[int, list[float]] = {n: [] for n in counts}
    with spawn("mock", mock_cmd, "0-1", mock_port, tmp / "mock.log", "/v1/models"):
        for round_no in range(1, args.rounds + 1):
            for n in counts:
                with instances(n, config, port, tmp) as procs:
                    url = f"http://127.0.0.1:{port}"
                    run_wrk(url, args.connections, 2.0)  # warm-up
                    before = sum(p.cpu_secs() for p in procs)
                    result = run_wrk(url, args.connections, args.duration)
                    spent = sum(p.cpu_secs() for p in procs) - before
                rps[n].append(result.rps)
                cpu[n].append(spent * 1000 / max(1, result.requests))
                print(
                    f"round {round_no}: {n} instance(s): {result.rps:8.0f} req/s, "
                    f"{cpu[n][-1]:.3f} ms CPU/req, {result.errors} errors",
                    flush=True,
                )
    base_rps = statistics.median(rps[1])
    base_cpu = statistics.median(cpu[1])
    print(f"\n{os.cpu_count()} cores, {args.connections} connections, median of {args.rounds}")
    print("| instances | req/s | ÷ one instance | CPU ms/req | ÷ one instance |")
    print("|---|---|---|---|---|")
    for n in counts:
        r, c = statistics.median(rps[n]), statistics.median(cpu[n])
        print(f"| {n} | {r:.0f} | {r / base_rps:.2f}x | {c:.3f} | {c / base_cpu:.2f}x |")
    subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
