"""`compress report`: a run, or several side by side, as one self-contained HTML page."""

from __future__ import annotations

import click


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="HTML file to write [default: RUN/report.html for one run; "
                   "comparison.html here for several].")
def report(runs, out) -> None:
    """Write RUN's report.html again (its stage table, macro F1 against speed-up, per-layer
    plan, parity checks, runtimes, device), or with several RUNs one page comparing them:
    the same table per run and one plot with a series per run. Plots are embedded: the page
    needs no network and no other file. Works on an interrupted run too (its finished
    stages).
    """
    from pathlib import Path

    from compress.pipeline.html_report import read_run_page, write_html_report

    target = Path(out) if out else Path(runs[0]) / "report.html" if len(runs) == 1 \
        else Path("comparison.html")
    if target.suffix.lower() not in (".html", ".htm"):
        from compress.errors import UserError

        raise UserError(f"--out {target}: give an .html file")
    click.echo(f"wrote {write_html_report([read_run_page(run) for run in runs], target)}")
