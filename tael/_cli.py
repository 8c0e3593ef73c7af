"""The ``tael`` command line. Library code never prints; this module does.

Heavy imports happen inside commands so ``tael --help`` stays instant.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log tael's internal messages (replay, repairs) to stderr.")
def main(verbose: bool) -> None:
    """tael: an embeddable telemetry store for spans, logs and metrics."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@main.command()
@click.option("--data", default="./tael-demo", show_default=True, help="Data directory to write the demo store into.")
@click.option("--spans", "n_spans", default=3000, show_default=True, help="Spans to generate.")
@click.option("--logs", "n_logs", default=3000, show_default=True, help="Log records to generate.")
@click.option("--metrics", "n_metrics", default=3000, show_default=True, help="Metric points to generate.")
def demo(data: str, n_spans: int, n_logs: int, n_metrics: int) -> None:
    """Write a realistic multi-service workload into DATA and print what reads back."""
    from ._demo import run_demo

    for line in run_demo(data, n_spans=n_spans, n_logs=n_logs, n_metrics=n_metrics):
        click.echo(line)


@main.command()
@click.argument("data")
def repair(data: str) -> None:
    """Move damaged parts of DATA's write-ahead log aside so the store opens again."""
    from . import repair as do_repair

    report = do_repair(data)
    click.echo(
        json.dumps(
            {
                "segments_checked": report.segments_checked,
                "frames_ok": report.frames_ok,
                "damaged": [
                    {"segment": d.segment, "offset": d.offset, "length": d.length, "quarantined_to": d.quarantined_to}
                    for d in report.damaged
                ],
            },
            indent=2,
        )
    )
    if report.damaged:
        sys.exit(1)


def _dump(value: Any) -> str:
    return json.dumps(value, default=str)
