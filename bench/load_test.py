"""Load test of `leadrank serve` on loopback: concurrent clients posting simulated leads to /score.

Starts the service as a subprocess on 127.0.0.1 (a free port), waits for /health, runs
``--clients`` threads that each post ``--leads-per-request`` leads in a loop for ``--seconds``,
then stops the server with SIGTERM. Prints requests, errors, p50/p99 latency, throughput and
the server's peak resident memory (sampled every 100 ms, all its processes together).

    python bench/load_test.py runs/model                      # a trained model directory
    python bench/load_test.py --tiny --clients 5 --seconds 5  # trains a tiny model first (~20 s)

The leads come from the NEV simulator, so the model must read the NEV FeatureSpec. Every
request goes to 127.0.0.1 only, and the run is bounded (at most 200 clients, 600 s).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
from _machine import header

from leadrank.config import ID_COLUMN, TIME_COLUMN, FeatureSpec, FunnelSpec
from leadrank.data.synth import SynthConfig, simulate

MAX_CLIENTS, MAX_SECONDS = 200, 600


def main() -> None:
    args = _parse()
    print(header(), flush=True)
    with tempfile.TemporaryDirectory(prefix="leadrank-load-") as scratch:
        os.environ.setdefault("LEADRANK_CACHE", str(Path(scratch) / "cache"))
        model_dir = _train_tiny(Path(scratch)) if args.tiny else args.model_dir
        leads = _leads(args.leads_per_request * 100)
        port, log = _free_port(), Path(scratch) / "server.log"
        with log.open("w") as log_file:  # uvicorn logs every request: a file, never an unread pipe
            server = subprocess.Popen(
                [sys.executable, "-m", "leadrank", "serve", str(model_dir), "--port", str(port), "--max-batch", str(args.max_batch)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_up(url, server, log)
            peak = _PeakMemory(server.pid)
            results = _run_clients(url, leads, args)
            peak.stop()
        finally:
            server.send_signal(signal.SIGTERM)
            exit_code = server.wait(60)
    _report(results, args, peak.bytes, exit_code)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", type=Path, help="Model directory (NEV features), e.g. the embedded-backbone model.")
    parser.add_argument("--tiny", action="store_true", help="Train a tiny random-backbone model first instead of MODEL_DIR.")
    parser.add_argument("--clients", type=int, default=50, help=f"Concurrent clients (1..{MAX_CLIENTS}).")
    parser.add_argument("--seconds", type=float, default=60.0, help=f"How long the clients send (up to {MAX_SECONDS}).")
    parser.add_argument("--leads-per-request", type=int, default=1, help="Leads in each POST /score.")
    parser.add_argument("--max-batch", type=int, default=256, help="The server's --max-batch.")
    args = parser.parse_args()
    if (args.model_dir is None) == (not args.tiny):
        parser.error("pass a MODEL_DIR or --tiny (not both)")
    if not 1 <= args.clients <= MAX_CLIENTS or not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--clients must be 1..{MAX_CLIENTS} and --seconds in (0, {MAX_SECONDS}]")
    if not 1 <= args.leads_per_request <= args.max_batch:
        parser.error("--leads-per-request must be between 1 and --max-batch")
    return args


def _train_tiny(folder: Path) -> Path:
    from leadrank.artifact import from_training, save
    from leadrank.settings import ModelConfig, TrainConfig
    from leadrank.training import train

    features, funnel = FeatureSpec.nev_default(), FunnelSpec.paper_default()
    model_config = ModelConfig(backbone="tiny", mode="lora", max_dialogue_tokens=32, lora_r=4)
    train_config = TrainConfig(batch_size=12, max_steps=4, eval_every=2, warmup_steps=1, min_train_positives=1, min_train_negatives=1)
    print("Training a tiny model...", flush=True)
    result = train(simulate(SynthConfig.preset("dense", n=300, seed=5)), features, funnel, model_config, train_config)
    return save(from_training(result), folder / "model")


def _leads(n: int) -> list[dict]:
    """Simulated leads as a client sends them: contract columns only, as JSON."""
    table = simulate(SynthConfig.preset("dense", n=n, seed=11))
    columns = [ID_COLUMN, TIME_COLUMN, *FeatureSpec.nev_default().input_columns]
    return json.loads(table[columns].to_json(orient="records", date_format="iso"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(url: str, server: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"the server did not answer /health within {timeout:.0f} s")


class _PeakMemory:
    """Samples the resident memory of a process and its children until stopped."""

    def __init__(self, pid: int) -> None:
        self.bytes = 0
        self._process = psutil.Process(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.1):
            try:
                processes = [self._process, *self._process.children(recursive=True)]
                self.bytes = max(self.bytes, sum(p.memory_info().rss for p in processes))
            except psutil.Error:  # a process ended between listing and reading
                continue

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _run_clients(url: str, leads: list[dict], args: argparse.Namespace) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + args.seconds

    def client(number: int) -> None:
        step = args.leads_per_request
        offset = number * step
        with httpx.Client(base_url=url, timeout=120) as session:
            while time.monotonic() < deadline:
                body = {"leads": [leads[(offset + i) % len(leads)] for i in range(step)]}
                offset += step * args.clients
                sent = time.monotonic()
                try:
                    response = session.post("/score", json=body)
                    problem = None if response.status_code == 200 else f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                with lock:
                    latencies.append(time.monotonic() - sent)
                    if problem:
                        errors.append(problem)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": np.asarray(latencies), "errors": errors, "seconds": time.monotonic() - started}


def _report(results: dict, args: argparse.Namespace, peak_bytes: int, exit_code: int) -> None:
    latencies, errors, seconds = results["latencies"], results["errors"], results["seconds"]
    ok = len(latencies) - len(errors)
    p50, p99 = (np.percentile(latencies, [50, 99]) * 1000) if len(latencies) else (float("nan"), float("nan"))
    print(f"clients {args.clients}, {args.leads_per_request} lead(s) per request, {seconds:.1f} s")
    print(f"requests {len(latencies):,}, errors {len(errors):,}")
    print(f"latency p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    print(f"throughput {ok / seconds:.1f} requests/s, {ok * args.leads_per_request / seconds:.1f} leads/s")
    print(f"server peak RSS {peak_bytes / 2**20:.0f} MiB; exit code after SIGTERM {exit_code}")
    for problem in dict.fromkeys(errors[:5]):
        print(f"  error: {problem}")


if __name__ == "__main__":
    main()
