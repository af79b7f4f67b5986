"""`sfcli models`: the presets a network can be built from and the named official weights."""

from __future__ import annotations

import click

from sfcli import hub
from sfcli.cli.common import err_console, print_json, print_table
from sfcli.presets import PRESETS


def describe_presets(progress=lambda done, total: None) -> list[dict]:
    """Each preset's size and cost: params, GFLOPs of one test view, frames x stride per pathway,
    training and test crops."""
    from sfcli.cost import describe

    rows = []
    for done, (name, preset) in enumerate(PRESETS.items()):
        progress(done, len(PRESETS))
        cost = describe(preset.model, name, preset.test_crop)
        rows.append({"arch": name, "params": cost["params"], "gflops": cost["gflops"],
                     "slow": f"{cost['slow_frames']}x{cost['slow_stride']}" if cost["slow_frames"] else None,
                     "fast": f"{cost['fast_frames']}x{cost['fast_stride']}" if cost["fast_frames"] else None,
                     "crop": preset.crop, "test_crop": preset.test_crop,
                     "weights": [w.name for w in hub.WEIGHTS.values() if w.arch == name]})
    return rows


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def models(as_json):
    """Presets (params, GFLOPs, frames x stride, crops) and the named weights --weights, --init and
    --checkpoint take (downloaded once into torch.hub's cache)."""
    from rich.progress import Progress

    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("counting GFLOPs", total=len(PRESETS))
        presets = describe_presets(lambda done, total: bar.update(task, completed=done))
    weights = [w.to_json() for w in hub.WEIGHTS.values()]
    if as_json:
        print_json({"presets": presets, "weights": weights, "cache": str(hub.cache_dir())})
        return
    show = lambda v: v or "-"  # noqa: E731
    print_table("presets", [(p["arch"], f"{p['params']:,}", f"{p['gflops']:.1f}", show(p["slow"]), show(p["fast"]),
                             f"{p['crop']} / {p['test_crop']}", ", ".join(p["weights"]) or "-") for p in presets],
                ("arch", "params", "GFLOPs per test view", "Slow frames x stride", "Fast frames x stride",
                 "crop train / test", "named weights"))
    print_table(f"named weights (Kinetics-400; cache {hub.cache_dir()})", [
        (w["name"], w["arch"], w["zoo"], f"{w['top1']:.2f}", "yes" if w["cached"] else "no") for w in weights
    ], ("name", "arch", "zoo", "published top-1 (30 views)", "cached"))
