"""Load test of ``caloreco serve`` over loopback gRPC with the official ``tritonclient``,
against in-process ``ModelClusterer`` inference on the same events in the same run.

The server runs as a subprocess (``python -m caloreco serve``, shipped SPVCNN, free ports)
with the same intra-op thread count as the in-process baseline. For each concurrency level
(default 1, 2, 4, 8, 16, 32) that many client threads, each with its own gRPC client, send
a fixed number of requests in total (one event per request, events taken round robin) and
the script reports requests/s, events/s, p50/p99 latency, the mean events per network call
(dynamic batching) and the server's model time per event (both from the server's Triton
statistics), and events/s relative to in-process clustering of one event per call
(``cluster_events(batch_size=1)``). Every response's cluster ids are checked against the
in-process ones. Client threads, server and baseline share the machine's cores: on a
small machine the client's own CPU time lowers the served figures.

With ``--url HOST:PORT`` the load goes to an already running KServe v2 gRPC server instead,
e.g. a real ``tritonserver`` serving ``caloreco export --triton-repo`` (``--model caloreco``,
the ensemble; docs/serving-triton.md); its thread settings are the server's own.

Run: ``python benchmarks/bench_serve.py [--events 8] [--requests 64]
[--levels 1,2,4,8,16,32] [--max-batch 8] [--max-queue-delay-us 2000] [--threads 1]
[--preset dtau] [--url HOST:PORT --model NAME] [--out bench_serve.json]``; a quick run:
``--events 4 --requests 16``.
"""

from __future__ import annotations

import argparse
import os
import sys

_THREADS = "1"
if "--threads" in sys.argv:
    _THREADS = sys.argv[sys.argv.index("--threads") + 1]
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _THREADS

import json  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from caloreco.clustering.model_clustering import ModelClusterer  # noqa: E402
from caloreco.serving.protocol import hits_to_features  # noqa: E402
from caloreco.simulation.production import DatasetSpec, simulate_range  # noqa: E402

MODEL = "caloreco_spvcnn"


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, int]:
    """``caloreco serve`` in a subprocess; returns it and its gRPC port."""
    cmd = [sys.executable, "-m", "caloreco", "serve", "--http-port", "0", "--grpc-port", "0",
           "--max-batch", str(args.max_batch), "--max-queue-delay-us", str(args.max_queue_delay_us),
           "--device", args.device]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"gRPC on [^:]+:(\d+)", line)
        if m:
            return proc, int(m.group(1))
    raise RuntimeError(f"the server exited with code {proc.wait()} before listening")


def in_process(events: list, device: str, batch_size: int) -> tuple[float, list]:
    """Events/s of in-process clustering (after one warm-up pass) and its predictions."""
    clusterer = ModelClusterer.from_checkpoint(None, device=device)
    clusterer.cluster_events(events[:1])
    t0 = time.perf_counter()
    preds = clusterer.cluster_events(events, batch_size=batch_size)
    return len(events) / (time.perf_counter() - t0), preds


def load_level(address: str, model: str, requests: list, reference: list, concurrency: int,
               n_requests: int) -> dict:
    """``n_requests`` requests from ``concurrency`` threads; latency and throughput."""
    import tritonclient.grpc as grpcclient

    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(n_requests))
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)

    def worker() -> None:
        client = grpcclient.InferenceServerClient(address)
        barrier.wait()
        while True:
            with lock:
                k = next(counter, None)
            if k is None:
                break
            i = k % len(requests)
            inp = grpcclient.InferInput("FEATURES", list(requests[i].shape), "FP32")
            inp.set_data_from_numpy(requests[i])
            t0 = time.perf_counter()
            result = client.infer(model, [inp])
            dt = time.perf_counter() - t0
            ok = np.array_equal(result.as_numpy("CLUSTER_ID"), reference[i].cluster_id)
            with lock:
                latencies.append(dt)
                if not ok:
                    errors.append(f"request {k}: cluster ids differ from in-process clustering")
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError("; ".join(errors[:3]))
    lat = np.array(latencies) * 1e3
    return {"concurrency": concurrency, "requests": n_requests, "wall_s": wall,
            "requests_per_s": n_requests / wall, "events_per_s": n_requests / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def server_stats(address: str, model: str) -> tuple[int, int, int]:
    """(events, network calls, nanoseconds in network calls) served so far."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(address)
    s = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    client.close()
    calls_ns = sum(int(b["compute_infer"].get("ns", 0)) for b in s.get("batch_stats", []))
    return int(s.get("inference_count", 0)), int(s.get("execution_count", 0)), calls_ns


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=8, help="distinct events (default 8)")
    p.add_argument("--requests", type=int, default=64, help="requests per concurrency level (default 64)")
    p.add_argument("--levels", default="1,2,4,8,16,32", help="concurrency levels")
    p.add_argument("--max-batch", type=int, default=8, help="server: events per network call (default 8)")
    p.add_argument("--max-queue-delay-us", type=int, default=2000, help="server: queue delay (default 2000)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads, server and baseline (default 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--preset", default="dtau", help="event preset (default dtau)")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--url", default=None, help="load a running server at HOST:PORT (gRPC) "
                   "instead of starting caloreco serve")
    p.add_argument("--model", default=MODEL, help=f"model name on that server (default {MODEL})")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    events = simulate_range(DatasetSpec(preset=args.preset, n_events=args.events, seed=args.seed), 0, args.events)
    hits = [len(e.hits["energy"]) for e in events]
    print(f"{len(events)} {args.preset} events, {np.mean(hits):.0f} hits on average; "
          f"{args.threads} intra-op thread(s), device {args.device}")
    base1, reference = in_process(events, args.device, 1)
    base_b, _ = in_process(events, args.device, args.max_batch)
    print(f"in-process ModelClusterer: {base1:.2f} events/s = {1e3 / base1:.0f} ms/event (1 event per call), "
          f"{base_b:.2f} events/s ({args.max_batch} per call)")

    requests = [hits_to_features(e.hits) for e in events]
    proc = None
    if args.url:
        address = args.url
    else:
        proc, port = start_server(args)
        address = f"127.0.0.1:{port}"
    rows = []
    try:
        load_level(address, args.model, requests, reference, 1, len(requests))  # warm-up
        print(f"{'conc':>5} {'req/s':>8} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ev/call':>8} "
              f"{'net ms/ev':>9} {'vs in-proc':>10}")
        for c in (int(v) for v in args.levels.split(",")):
            ev0, calls0, ns0 = server_stats(address, args.model)
            row = load_level(address, args.model, requests, reference, c, args.requests)
            ev1, calls1, ns1 = server_stats(address, args.model)
            row["events_per_call"] = (ev1 - ev0) / max(1, calls1 - calls0)
            row["network_ms_per_event"] = (ns1 - ns0) * 1e-6 / max(1, ev1 - ev0)  # server-side model time
            row["ratio_vs_in_process"] = row["events_per_s"] / base1
            rows.append(row)
            print(f"{c:>5} {row['requests_per_s']:>8.2f} {row['events_per_s']:>9.2f} {row['p50_ms']:>8.1f} "
                  f"{row['p99_ms']:>8.1f} {row['events_per_call']:>8.2f} {row['network_ms_per_event']:>9.1f} "
                  f"{row['ratio_vs_in_process']:>10.2f}")
    finally:
        if proc is not None:
            proc.terminate()  # SIGTERM: graceful shutdown
            proc.wait(30)
    if args.out:
        summary = {"server": args.url or "caloreco serve", "model": args.model,
                   "events": len(events), "mean_hits": float(np.mean(hits)), "threads": args.threads,
                   "in_process_events_per_s": base1, "in_process_batched_events_per_s": base_b,
                   "max_batch": args.max_batch, "max_queue_delay_us": args.max_queue_delay_us, "levels": rows}
        from caloreco.utils.atomic import atomic_write_text

        atomic_write_text(args.out, json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
