"""Before and after: llm-proxy at another revision (A, the base) against this tree (B), in one
run, on the same fake upstream, in interleaved rounds whose order alternates.

    python -m tests.perf.ab --base REV [--rounds 6] [--duration 4] [--connections 1 32]
                            [--streams 100] [--stream-rounds 4]

For a change to the request path: the ratios B/A of requests/s and of proxy CPU per request
(the median over the rounds), and for streams chunks/s, time to first chunk and CPU per stream.
The base is `git archive REV`, run from a temporary directory with this virtualenv (so the same
dependencies). The order alternates round by round (A B, B A, ...): whichever proxy goes second
meets an upstream that still holds the first one's connections, which showed as a 15-20 %
longer time to first chunk for 1,000 streams when the order was fixed. Both proxies are pinned
to CPU 0 in turn (one under load at a time), the upstream and wrk to CPU 1, as `bench` does.
Only 127.0.0.1; everything started here is stopped here.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.perf import bench

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--base", required=True, help="the revision to compare with (A)")
    parser.add_argument("--rounds", type=int, default=6, help="load rounds (even)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per load run")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--streams", type=int, default=100, help="concurrent streams (0: none)")
    parser.add_argument("--stream-rounds", type=int, default=4, help="even: each order as often")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="llm-proxy-ab-"))
    try:
        base = tmp / "base"
        base.mkdir()
        archive = subprocess.run(
            ["git", "archive", args.base], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        return _run(args, tmp, {"A": base, "B": ROOT})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args: argparse.Namespace, tmp: Path, trees: dict[str, Path]) -> int:
    py = sys.executable
    ports = {name: bench.free_port() for name in ("mock", "A", "B")}
    mock_cmd = [py, "-m", "llm_proxy", "mock-upstream", "--port", str(ports["mock"])]
    with contextlib.ExitStack() as stack:
        dsn = stack.enter_context(bench.request_log_database())
        mock = stack.enter_context(
            bench.spawn(
                "mock", [*mock_cmd, "--chunks", "20"], bench.LOAD_CPU, ports["mock"],
                tmp / "mock.log", "/v1/models",
            )
        )  # fmt: skip
        procs = {}
        for name, tree in trees.items():
            config = tmp / f"{name}.yaml"
            bench.write_config(config, mock.url, ports[name], dsn)
            serve = ["env", f"PYTHONPATH={tree}", py, "-m", "llm_proxy", "serve"]
            procs[name] = stack.enter_context(
                bench.spawn(
                    name, [*serve, "--config", str(config)], bench.PROXY_CPU, ports[name],
                    tmp / f"{name}.log", "/health",
                )
            )  # fmt: skip
        time.sleep(0.5)
        _load(args, procs)
        _streams(args, procs)
    return 0


def _order(i: int) -> tuple[str, str]:
    return ("A", "B") if i % 2 == 0 else ("B", "A")


def _load(args: argparse.Namespace, procs: dict[str, bench.Proc]) -> None:
    runs: dict[tuple[str, int], list[bench.LoadResult]] = {}
    for i in range(args.rounds):
        for c in args.connections:
            for name in _order(i):
                r = bench.load(procs[name], c, args.duration, True, i == 0)
                runs.setdefault((name, c), []).append(r)
                print(f"round {i + 1} {c:>4} conns {name}: {r.rps:9.0f} req/s  "
                      f"cpu {r.cpu_ms_per_request:.4f} ms/req", flush=True)  # fmt: skip
    for c in args.connections if args.rounds else ():
        rps = {n: statistics.median(r.rps for r in runs[(n, c)]) for n in "AB"}
        cpu = {n: statistics.median(r.cpu_ms_per_request or 0 for r in runs[(n, c)]) for n in "AB"}
        print(f"{c:>4} conns: A {rps['A']:8.0f} req/s {cpu['A']:.4f} ms/req | "
              f"B {rps['B']:8.0f} req/s {cpu['B']:.4f} ms/req | "
              f"B/A req/s {rps['B'] / rps['A']:.3f}, CPU {cpu['B'] / cpu['A']:.3f}")  # fmt: skip


def _streams(args: argparse.Namespace, procs: dict[str, bench.Proc]) -> None:
    if not args.streams:
        return
    results: dict[str, list[bench.StreamResult]] = {"A": [], "B": []}
    for i in range(args.stream_rounds):
        for name in _order(i):
            st = bench.streams(procs[name].url, args.streams, 30, 25.0, procs[name])
            results[name].append(st)
            print(f"streams {name}: {st.chunks_per_sec:8.0f} chunks/s  ttfc p50 "
                  f"{st.ttfc_p50_ms:.1f} ms  errors {st.errors}  "
                  f"cpu {st.cpu_ms_per_stream or 0:.2f} ms/stream", flush=True)  # fmt: skip
    med = {
        n: (
            statistics.median(s.chunks_per_sec for s in results[n]),
            statistics.median(s.ttfc_p50_ms for s in results[n]),
            statistics.median(s.cpu_ms_per_stream or 0 for s in results[n]),
        )
        for n in "AB"
    }
    (ca, ta, pa), (cb, tb, pb) = med["A"], med["B"]
    print(f"{args.streams} streams: B/A chunks/s {cb / ca:.3f}, ttfc p50 {tb / ta:.3f}, "
          f"CPU per stream {pb / pa:.3f}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
