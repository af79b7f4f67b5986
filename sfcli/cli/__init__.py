"""The `sfcli` command line: a thin layer of click commands over library functions that the
tests and examples/ call directly. Every error a user can cause ends in one sentence on stderr
and a non-zero exit, never a traceback."""

from __future__ import annotations

import gc
import sys

import click
import torch.distributed as dist

from sfcli.cli import evaluate, export, extract, infer, info, models, plot, train
from sfcli.cli.common import err_console
from sfcli.devices import keep_freed_memory
from sfcli.errors import Interrupted, SfcliError


class OneLineErrors(click.Group):
    """Every error a user can cause ends in one line on stderr and a non-zero exit, no usage dump
    and no traceback."""

    def main(self, *args, **kwargs):
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
            if isinstance(code, int) and code:  # click.exceptions.Exit(code) from a command
                sys.exit(code)
            return code
        except click.exceptions.Abort:
            err_console.print("sfcli: interrupted")
            sys.exit(130)
        except click.ClickException as e:
            click.echo(f"sfcli: error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except Interrupted as e:
            click.echo(f"sfcli: {e}", err=True)
            sys.exit(128 + e.signum)
        except SfcliError as e:
            click.echo(f"sfcli: error: {e}", err=True)
            sys.exit(1)
        finally:
            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sfcli")
def cli():
    """SlowFast video networks: train, evaluate, ablate and run them."""


for command in (info.info, train.train, train.ablate_command, evaluate.evaluate, info.synth, infer.infer,
                infer.convert, export.export, extract.extract, plot.plot, models.models):
    cli.add_command(command)


def main():
    # The imports' objects live as long as the process: left out of garbage collection, they are
    # not swept at exit either (0.2 s of every command, measured).
    gc.freeze()
    keep_freed_memory()
    cli(prog_name="sfcli")


if __name__ == "__main__":
    main()
