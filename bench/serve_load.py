"""Load on `ftune serve`: N concurrent clients (the official `openai` client) send chat requests
spread over the served runs, with dynamic batching on (``--max-batch 8``) and off
(``--max-batch 1``), each against its own server process, in one run.

Prints one JSON object: for each setting, requests/s, generated tokens/s, p50 and p95 latency
(seconds), the largest batch the server decoded; and ``speedup`` = on / off for requests/s and
tokens/s (above 1: batching pays).

    python bench/serve_load.py RUN [RUN ...] [--clients 8] [--requests 2] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PROMPTS = ["Give three tips for staying healthy.", "What are the three primary colors?",
           "Describe the structure of an atom.", "How can we reduce air pollution?",
           "Write a short story about a lost key.", "Explain why the sky is blue.",
           "Name three famous painters.", "What is the capital of France?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(runs: list[str], max_batch: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ftune.cli.main", "serve", *runs, "--port", str(port),
                                "--max-batch", str(max_batch)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            return process, base
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve_load: the server did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)


def load(base: str, names: list[str], clients: int, requests: int, max_tokens: int) -> dict:
    from openai import OpenAI

    client = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=600)
    jobs = [(names[i % len(names)], PROMPTS[i % len(PROMPTS)]) for i in range(clients * requests)]

    def one(job):
        started = time.perf_counter()
        reply = client.chat.completions.create(model=job[0], messages=[{"role": "user", "content": job[1]}],
                                               max_tokens=max_tokens, temperature=0)
        return time.perf_counter() - started, reply.usage.completion_tokens

    one(jobs[0])  # warm up: first-call costs are not load
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, jobs))
    seconds = time.perf_counter() - started
    latencies = sorted(r[0] for r in results)
    health = json.loads(urllib.request.urlopen(base + "/health").read())
    return {"requests": len(jobs), "seconds": round(seconds, 2),
            "requests_per_second": round(len(jobs) / seconds, 3),
            "generated_tokens_per_second": round(sum(r[1] for r in results) / seconds, 1),
            "p50_latency_s": round(latencies[len(latencies) // 2], 2),
            "p95_latency_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 2),
            "largest_batch": max(health["largest_batch"].values(), default=0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories (or models) to serve; requests rotate over them")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args(argv)
    names = [Path(r).name for r in args.runs]
    report = {"clients": args.clients, "requests_per_client": args.requests, "max_tokens": args.max_tokens,
              "runs": names}
    for label, max_batch in (("batching_off", 1), ("batching_on", 8)):
        process, base = start_server(args.runs, max_batch)
        try:
            report[label] = load(base, names, args.clients, args.requests, args.max_tokens)
        finally:
            process.terminate()
            process.wait(timeout=60)
    on, off = report["batching_on"], report["batching_off"]
    report["speedup"] = {key: round(on[key] / off[key], 2)
                         for key in ("requests_per_second", "generated_tokens_per_second")}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
