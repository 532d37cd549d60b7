"""The `compress` command line: the click group and the one place where errors become exit
codes. Each command (one module per family) parses its options, calls one library function
and prints; torch is imported only inside the commands, so that `--help` starts fast."""

from __future__ import annotations

import logging
import sys

import click

from compress import __version__
from compress.cli.analyze import analyze
from compress.cli.bench import bench, predict, retime
from compress.cli.models import export, import_command, inspect
from compress.cli.report import report
from compress.cli.run import arch_search, run, search
from compress.cli.train import eval_command, finetune, train
from compress.errors import StageFailed, UserError, first_line


class _Group(click.Group):
    """Exit codes: 2 for a user error (bad input, one line, never a traceback), 1 for a stage
    that ran but failed its check (e.g. export parity), 130 for Ctrl-C. Any other exception
    is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"error: {first_line(exc)}", err=True)
            sys.exit(2)
        except StageFailed as exc:
            click.echo(f"error: {first_line(exc)}", err=True)
            sys.exit(1)
        except click.UsageError as exc:  # a bad option of a sub-command: one line too
            if exc.ctx is None or exc.ctx.command is self:
                raise
            click.echo(f"error: {exc.ctx.command_path}: {exc.format_message()}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: finished steps are kept (compress run: the same command "
                       "with --resume continues; train and finetune continue on their own)",
                       err=True)
            sys.exit(130)
        except OSError as exc:  # the machine's fault at a named file: full, read-only, denied
            if exc.filename is None:
                raise
            click.echo(f"error: {exc.filename}: {exc.strerror or exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="compress")
def main() -> None:
    """Compress small vision classifiers: prune, decompose, fine-tune, export, measure."""
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)
    progress = logging.getLogger("compress.progress")  # which image cache and why, decoding
    if not progress.handlers:
        progress.addHandler(_StderrNow())
        progress.setLevel(logging.INFO)
        progress.propagate = False


class _StderrNow(logging.StreamHandler):
    """Plain lines on whatever sys.stderr is when a line is written (not when the handler was
    made: a test runner swaps it per command)."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


# `compress --help` lists the commands by name, whatever the order here
for _command in (train, eval_command, inspect, import_command, run, finetune, export, bench,
                 predict, retime, analyze, search, arch_search, report):
    main.add_command(_command)
