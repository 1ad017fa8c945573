"""``volsight metrics``: the available metrics, what they accept and what they do to their inputs."""

from __future__ import annotations

import argparse
import json

HELP = "List the available metrics: kind, dimensions, channels, learned or not, metric properties, preprocessing."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from core.metrics.registry import describe_metrics

    items = describe_metrics()
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    for d in items:
        props = d.get("properties") or ("metric" if d["metric_properties"] else "not a metric")
        dims = "/".join(f"{x}D" for x in d["dims"])
        chans = "/".join(map(str, d["channels"]))
        learned = "learned" if d["learned"] else "classical"
        print(f"{d['name']:<13} {d['kind']:<10} {dims:<5} ch {chans:<5} {learned:<9} {props}")
        if d.get("doc"):
            print(f"{'':<13} {d['doc']}")
        print(f"{'':<13} preprocessing: {d['preprocessing']}")
        if d.get("weights_note"):
            print(f"{'':<13} weights: {d['weights_note']}")
        elif d["learned"] and "weights" in d:
            state = "installed" if d.get("weights_installed") else "not installed; use --weights PATH"
            print(f"{'':<13} weights: {d['weights']} ({state})")
    return 0
