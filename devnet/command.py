"""``byteleap devnet``'s command: build the plan, run the devnet with a progress view, print
or write the report, and clean up (see :mod:`devnet.cli` for its options)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import tempfile
from pathlib import Path

from rich.console import Console

from byteleap.errors import ByteLeapError
from devnet.failures import Limits
from devnet.plan import build_plan
from devnet.processes import DevnetFailed, Interrupted
from devnet.progress import LineProgress, LiveProgress, Progress
from devnet.report import render_checks, render_renters, render_table, render_validators
from devnet.report_checks import problems
from devnet.runner import Devnet, Result
from devnet.specs import DevnetOptions


def _progress(as_json: bool, err: Console) -> Progress:
    if err.is_terminal and not as_json:
        return LiveProgress(err)
    return LineProgress(err)


def run_command(
    options: DevnetOptions,
    *,
    as_json: bool,
    keep: bool,
    run_dir: Path | None,
    timeout_s: float,
    out: Console,
    err: Console,
) -> int:
    """``byteleap devnet``: run, report, clean up. Returns the exit code: 0 when the network
    judged every miner as it must, 1 when it did not or could not run, 130 when interrupted."""
    if run_dir is not None and run_dir.exists() and any(run_dir.iterdir()):
        err.print(f"[bold red]error[/]: {run_dir} is not empty", highlight=False)
        return 2
    directory = run_dir or Path(tempfile.mkdtemp(prefix="byteleap-devnet-"))
    keep = keep or run_dir is not None
    result: Result | None = None
    blamed: str | None = None
    exit_codes: dict[str, int] = {}
    try:
        plan = build_plan(options, directory)
        devnet = Devnet(plan, _progress(as_json, err), limits=Limits(total_s=timeout_s))
        try:
            result = asyncio.run(devnet.run())
        finally:
            exit_codes = devnet.exit_codes
    except DevnetFailed as exc:
        blamed = exc.process
        err.print(f"[bold red]devnet failed[/]: {exc.message}", highlight=False)
        if exc.log:
            where = f" ({exc.process})" if exc.process else ""
            err.print(f"[bold]last lines of the log{where}:[/]", highlight=False)
            err.print(exc.log, highlight=False, markup=False)
    except (Interrupted, KeyboardInterrupt):
        err.print("devnet: interrupted; every process was stopped", highlight=False)
        return 130
    except ByteLeapError as exc:
        err.print(f"[bold red]devnet failed[/]: {exc.message}", highlight=False)
    finally:
        for name, code in exit_codes.items():
            if name != blamed and code not in (0, -signal.SIGTERM):
                err.print(f"devnet: {name} exited with code {code} on shutdown", highlight=False)
        if keep:
            err.print(f"devnet: run directory kept at {directory}", highlight=False)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    if result is None:
        return 1
    report = result.report
    if as_json:
        out.file.write(json.dumps(report) + "\n")  # exactly the JSON: no markup, no wrapping
        out.file.flush()
    else:
        names = {m.uid: m.name for m in result.snapshot.miners}
        out.print(render_table(report, names=names))
        validators = render_validators(report)
        if validators is not None:
            out.print(validators)
        renters = render_renters(report, names=names)
        if renters is not None:
            out.print(renters)
        out.print(render_checks(report))
    found = problems(report)
    for problem in found:
        err.print(f"[bold red]unexpected[/]: {problem}", highlight=False)
    return 1 if found else 0
