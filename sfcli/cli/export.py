"""`sfcli export`: a network as ONNX, TorchScript or an ExportedProgram, checked against sfcli."""

from __future__ import annotations

import click

from sfcli.cli.common import err_console, print_json, print_table
from sfcli.export import FORMATS


@click.command("export")
@click.argument("weights", type=click.Path())
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="What to write.")
@click.option("--arch", help="Architecture of the weights (default: recognised from them).")
@click.option("--labels", type=click.Path(dir_okay=False), help="Class names to store, one per line.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def export(weights, out, fmt, arch, labels, as_json):
    """Write WEIGHTS (any checkpoint or run folder) as OUT, BN folded into plain convs, with a
    dynamic batch dimension and its input contract in OUT's name with suffix .json."""
    from sfcli.export import export_model

    with err_console.status(f"exporting {weights} as {fmt} and checking it against sfcli"):
        result = export_model(weights, out, fmt, arch, labels)
    if as_json:
        print_json(result.to_json())
        return
    shape = " x ".join(str(d) for d in result.input_shape)
    print_table(f"{weights} -> {result.path}", [
        ("format", result.format), ("input (NCTHW float32)", shape), ("input contract", result.contract),
        (f"max |error| vs sfcli, batch {result.checked_batch}", f"{result.max_error:.2e}"),
    ], ("", "value"))
