"""``caloreco bench``: throughput of every clustering method on the same events."""

from __future__ import annotations

import argparse
import json
from typing import Any

from caloreco.cli_types import int_list as _int_list
from caloreco.errors import ConfigError


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from caloreco.evaluation.throughput import format_table, measure
    from caloreco.utils.atomic import atomic_write_text

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.data:
        from caloreco.evaluation.report import load_events

        events, _ = load_events(args.data, args.events)
        source = args.data
    else:
        from caloreco.simulation.production import DatasetSpec, simulate_range

        events = simulate_range(DatasetSpec(preset="dtau", n_events=args.events, seed=args.seed),
                                0, args.events)
        source = f"simulated dtau, seed {args.seed}"
    names = [m for m in args.methods.split(",") if m]
    baseline = args.baseline if args.baseline in names else None
    if args.baseline and baseline is None:
        raise ConfigError(f"--baseline {args.baseline} is not among --methods {names}")
    models = {k: v for k, v in (("spvcnn", args.spvcnn_model), ("gravnet", args.gravnet_model)) if v}
    print(f"{len(events)} events from {source}; torch threads {torch.get_num_threads()}; "
          f"best of {args.repeat} passes after a warm-up", flush=True)
    batch_sizes = args.batch_sizes or ([1, 4, 16, 64] if args.device.startswith("cuda") else [1])
    rows = measure(names, events, device=args.device, batch_sizes=batch_sizes,
                   models=models, repeat=args.repeat, baseline=baseline,
                   on_row=lambda r: print(f"  measured {r.method} batch {r.batch_size}: "
                                          f"{r.ms_per_event:.1f} ms/event", flush=True))
    print(format_table(rows, baseline))
    if args.json:
        report: dict[str, Any] = {"source": source, "events": len(events),
                                  "rows": [r.as_dict() for r in rows]}
        atomic_write_text(args.json, json.dumps(report, indent=2))
    return 0


def add_commands(sub: Any) -> None:
    """Add the ``bench`` subcommand."""
    b = sub.add_parser("bench", help="throughput of the clustering methods (events/s, ms/event)",
                       description="Time every method on the same events (default: simulated "
                                   "dtau events); networks at each --batch-sizes entry.")
    b.add_argument("--data", default=None, help="Parquet shards (default: simulate dtau events)")
    b.add_argument("--events", type=int, default=20, help="events (default 20)")
    b.add_argument("--seed", type=int, default=303, help="seed of simulated events (default 303)")
    b.add_argument("--methods", default="spvcnn,gravnet,clue,pf")
    b.add_argument("--device", default="cpu", help="where networks run: cpu, cuda")
    b.add_argument("--batch-sizes", type=_int_list, default=None,
                   help="events per network call (default 1 on CPU, 1,4,16,64 on CUDA)")
    b.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    b.add_argument("--repeat", type=int, default=2, help="timed passes, best kept (default 2)")
    b.add_argument("--baseline", default="clue", help="method the ratios refer to (default clue)")
    b.add_argument("--spvcnn-model", default=None)
    b.add_argument("--gravnet-model", default=None)
    b.add_argument("--json", default=None, help="write the rows as JSON here")
    b.set_defaults(func=cmd_bench)
