"""Command-line handler of ``caloreco serve``: the KServe v2 / Triton inference server.

Registered on the main parser by :func:`add_commands`; it only parses arguments and calls
:class:`caloreco.serving.server.InferenceServer` (``docs/serving.md``).
"""

from __future__ import annotations

import argparse

from caloreco.cli_types import non_negative_int as _non_negative_int
from caloreco.cli_types import port as _port
from caloreco.cli_types import positive_int as _positive_int


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the model, serve until SIGTERM/SIGINT, then shut down gracefully."""
    from caloreco.serving.server import InferenceServer

    server = InferenceServer.from_checkpoint(
        args.model, name=args.name, device=args.device, shipped=args.shipped, max_hits=args.max_hits,
        max_batch_events=args.max_batch, max_queue_delay_us=args.max_queue_delay_us, host=args.host,
        http_port=args.http_port, grpc_port=args.grpc_port, max_body_bytes=args.max_body_bytes)
    server.start()
    model = server.repo.get(args.name)
    print(f"caloreco serve: model '{args.name}' ({type(model.clusterer.model).__name__}, "
          f"{args.model or 'shipped ' + args.shipped}) on {model.clusterer.device}", flush=True)
    print(f"caloreco serve: HTTP on {args.host}:{server.http_port}, gRPC on {args.host}:{server.grpc_port}",
          flush=True)
    signum = server.serve_until_signal(grace_s=args.grace)
    print(f"caloreco serve: stopped after signal {signum}", flush=True)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` sub-command to the main parser."""

    s = sub.add_parser("serve", help="inference server (KServe v2 / Triton protocol, HTTP + gRPC)",
                       description="Serve a clustering model over the KServe v2 inference protocol "
                                   "(Triton's; HTTP/REST and gRPC), with dynamic batching.")
    s.add_argument("--model", default=None, help="checkpoint file or run directory (default: the shipped model)")
    s.add_argument("--shipped", choices=["spvcnn", "gravnet"], default="spvcnn",
                   help="shipped model when --model is not given (default spvcnn)")
    s.add_argument("--name", default="caloreco_spvcnn", help="model name in requests (default caloreco_spvcnn)")
    s.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    s.add_argument("--http-port", type=_port, default=8000, help="HTTP port (default 8000; 0 = a free port)")
    s.add_argument("--grpc-port", type=_port, default=8001, help="gRPC port (default 8001; 0 = a free port)")
    s.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    s.add_argument("--max-batch", type=_positive_int, default=16,
                   help="events merged into one network call at most (default 16)")
    s.add_argument("--max-queue-delay-us", type=_non_negative_int, default=1000,
                   help="how long a request waits for others to batch with [us] (default 1000)")
    s.add_argument("--max-hits", type=_positive_int, default=500_000,
                   help="hits per request at most (default 500000)")
    s.add_argument("--max-body-bytes", type=_positive_int, default=128 << 20,
                   help="largest HTTP body / gRPC message in bytes (default 128 MiB)")
    s.add_argument("--grace", type=float, default=30.0,
                   help="seconds running requests get to finish at shutdown (default 30)")
    s.set_defaults(func=cmd_serve)
