"""`invoke bench`: the figures that matter, each next to its reference measured in the same run.

Each benchmark is a script under benchmarks/ (on the host, or in the dev image when it needs TensorFlow)
that writes `benchmarks/results/<name>.json`: a list of figures. This module runs them in order, prints one
rich table, and writes the run's combined JSON, PNG plots and docs/performance.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tfdock_host.errors import UsageError
from tfdock_host.settings import ROOT

RESULTS = ROOT / "benchmarks" / "results"
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"


@dataclasses.dataclass(frozen=True)
class Figure:
    """One measured figure: repeated samples of ours and of its reference, and the goal they are held to.

    goal: ("ratio", op, x) compares median(ours) / median(reference) with x; ("extra", "<=", x) compares
    median(ours) - median(reference); ("value", op, x) compares median(ours) alone; None: informative.
    """

    group: str
    metric: str
    unit: str
    ours: list[float]
    reference: list[float]
    reference_name: str
    goal: tuple[str, str, float] | None = None
    note: str = ""
    carried_over_from: str = ""  # in a report: the earlier run that measured it ("" when this run did)

    @property
    def ratio(self) -> float:
        reference = statistics.median(self.reference)
        return statistics.median(self.ours) / reference if reference else float("nan")

    def goal_met(self) -> bool | None:
        if self.goal is None:
            return None
        kind, op, target = self.goal
        ours, reference = statistics.median(self.ours), statistics.median(self.reference)
        value = {"ratio": self.ratio, "extra": ours - reference, "value": ours}[kind]
        return value <= target if op == "<=" else value >= target

    def goal_text(self) -> str:
        if self.goal is None:
            return "informative"
        kind, op, target = self.goal
        return f"{ {'ratio': 'ratio', 'extra': 'extra', 'value': 'ours'}[kind] } {op} {target:g}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ratio": self.ratio, "goal_met": self.goal_met()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Figure:
        known = {field.name for field in dataclasses.fields(cls)}
        fields = {key: value for key, value in values.items() if key in known}
        if fields.get("goal") is not None:
            fields["goal"] = tuple(fields["goal"])
        return cls(**fields)


def spread(samples: Sequence[float]) -> str:
    """median (min..max), or the single value; 4 digits tell an accuracy of 93.69% from a goal of 93.7."""
    if len(samples) == 1:
        return f"{samples[0]:.4g}"
    return f"{statistics.median(samples):.4g} ({min(samples):.4g}..{max(samples):.4g})"


def write_figures(name: str, figures: list[Figure]) -> Path:
    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps([figure.to_dict() for figure in figures], indent=2) + "\n")
    temporary.replace(path)
    return path


def missed_goals(name: str, figures: list[Figure]) -> int:
    """A benchmark's verdict as an exit code: 1 when a figure missed its goal (each named on stderr)."""
    missed = [figure for figure in figures if figure.goal_met() is False]
    for figure in missed:
        print(
            f"{name}: goal missed: {figure.metric}: {spread(figure.ours)} {figure.unit} against "
            f"{spread(figure.reference)} ({figure.reference_name}), goal {figure.goal_text()}",
            file=sys.stderr,
        )
    return 1 if missed else 0


def publish(name: str, figures: list[Figure]) -> int:
    """Write a benchmark's figures; its exit code: non-zero when one missed its goal."""
    write_figures(name, figures)
    return missed_goals(name, figures)


def read_figures(name: str) -> list[Figure]:
    values = json.loads((RESULTS / f"{name}.json").read_text())
    if name == "time_to_accuracy":  # written in the container, in its own richer format
        return _time_to_accuracy_figures(values)
    return [Figure.from_dict(figure) for figure in values]


def _time_to_accuracy_figures(result: dict[str, Any]) -> list[Figure]:
    ours, baseline = result["recipes"]["tfdock"], result["recipes"]["keras-io"]
    goals = result["goals"]  # the script's own: it exits non-zero when one is missed
    group, reference = "time to accuracy", "keras-io mnist_convnet"
    never = float("inf")  # a recipe that never reached the target
    figures = [
        Figure(
            group,
            f"training seconds to {result['target_accuracy']:.0%} test accuracy",
            "s",
            [ours["seconds_to_target"] or never],
            [baseline["seconds_to_target"] or never],
            reference,
            ("ratio", "<=", goals["seconds_to_target_ratio"]),
            "Fashion-MNIST, evaluation time excluded; plot: time_to_accuracy.png",
        ),
        Figure(group, "training throughput", "images/s", [ours["images_per_second"]],
               [baseline["images_per_second"]], reference),
    ]  # fmt: skip
    if not result["quick"]:  # a quick run stops each recipe at the target: no final accuracy to compare
        figures.append(
            Figure(group, "final test accuracy after each recipe's epochs", "%",
                   [100 * ours["final_accuracy"]], [100 * baseline["final_accuracy"]], reference,
                   ("ratio", ">=", goals["final_accuracy_ratio"]))
        )  # fmt: skip
    return figures


def timed(command: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> float:
    """Seconds a command takes; it must succeed (a failed run is no measurement)."""
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return time.perf_counter() - started


def repeat(measure: Callable[[], float], times: int) -> list[float]:
    return [measure() for _ in range(times)]


def machine() -> dict[str, Any]:
    from tfdock_host.engine import connect

    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line
    )
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "engine": connect().version().get("Version", "unknown"),
    }


# The benchmarks in report order: (name, where it runs, script and arguments, arguments added by --quick,
# or None for one that a quick run leaves out).
BENCHMARKS: list[tuple[str, str, list[str], list[str] | None]] = [
    ("default_training", "host", ["benchmarks/default_training.py"], None),
    ("time_to_accuracy", "container", ["benchmarks/time_to_accuracy.py"], ["--quick"]),
    ("container_overhead", "host", ["benchmarks/container_overhead.py"], ["--quick"]),
    ("cpu_quota", "host", ["benchmarks/cpu_quota.py"], ["--quick"]),
    ("start_overhead", "host", ["benchmarks/start_overhead.py"], ["--quick"]),
    ("dev_loop", "host", ["benchmarks/dev_loop.py"], ["--quick"]),
    ("edit_test_loop", "host", ["benchmarks/edit_test_loop.py"], ["--quick"]),
    ("image", "host", ["benchmarks/image_sizes.py"], []),
    ("input_pipeline", "container", ["benchmarks/input_pipeline.py"], ["--quick"]),
    ("steps_per_call", "container", ["benchmarks/steps_per_call.py"], ["--quick"]),
    ("whole_step_xla", "container", ["benchmarks/whole_step_xla.py"], ["--quick"]),
    ("loop_vs_fit", "container", ["benchmarks/loop_vs_fit.py"], ["--quick"]),
    ("gpu_training", "host", ["benchmarks/gpu_training.py"], ["--quick"]),
]
# Run only when `invoke bench --gpus` asks for GPUs, which they are given as `--gpus VALUE`.
NEEDS_GPUS = {"gpu_training"}


def selected(quick: bool, only: Sequence[str] = (), gpus: bool = False) -> list[str]:
    """The benchmarks to run: `only` these, else all of them (a quick run leaves out the full-only ones;
    without GPUs asked for, those that need them)."""
    names = [name for name, *_ in BENCHMARKS]
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise UsageError(f"unknown benchmark {', '.join(unknown)}", f"use any of {', '.join(names)}")
    without_gpus = sorted(set(only) & NEEDS_GPUS) if not gpus else []
    if without_gpus:
        raise UsageError(f"{', '.join(without_gpus)} needs GPUs", "ask for them: invoke bench --gpus all")
    if only:
        return [name for name in names if name in only]
    return [
        name
        for name, _, _, quick_args in BENCHMARKS
        if (not quick or quick_args is not None) and (gpus or name not in NEEDS_GPUS)
    ]


def run(settings: Any, quick: bool, only: Sequence[str] = ()) -> int:
    """Run the benchmarks (or `only` these), then report all of them. Returns non-zero if one failed or
    missed a goal in this run (rows carried over from an earlier run do not count: they say so). With
    GPUs asked for (settings.gpus), the engine is asked for them first: no NVIDIA runtime is one line."""
    from tfdock_host import console
    from tfdock_host.run import require_gpu_access
    from tfdock_host.suites import run_script_in_dev_image

    chosen = selected(quick, only, gpus=bool(settings.gpu_requests))
    if settings.gpu_requests:
        require_gpu_access(settings.base_image, settings.gpu_requests)
    failed, fresh = [], set()
    for name, where, command, quick_args in BENCHMARKS:
        if name not in chosen:
            continue
        args = [*command, *((quick_args or []) if quick else [])]
        if name in NEEDS_GPUS:
            args += ["--gpus", settings.gpus]
        console.info(f"benchmark {name} ({where}): {' '.join(args)}")
        written_before = _written_at(name)
        if where == "host":
            exit_code = subprocess.run([sys.executable, *args], cwd=ROOT, check=False).returncode
        else:
            exit_code = run_script_in_dev_image(settings, "bench", args, writable=RESULTS)
        if _written_at(name) != written_before:
            fresh.add(name)
            exit_code = exit_code or missed_goals(name, read_figures(name))
        if exit_code != 0:
            failed.append(name)
    report(settings, quick, fresh)
    if failed:
        console.info(f"failed or missed a goal: {', '.join(failed)} (rows marked fresh are this run's)")
    return 1 if failed else 0


def _written_at(name: str) -> int | None:
    path = RESULTS / f"{name}.json"
    return path.stat().st_mtime_ns if path.exists() else None


def report(settings: Any, quick: bool, fresh: set[str]) -> None:
    """Combine every benchmark's latest figures into the table, the dated JSON, the plots and the doc; rows
    of benchmarks not run now (`fresh`) are marked as carried over from an earlier run."""
    from tfdock_host.suites import run_script_in_dev_image

    reported = [name for name, *_ in BENCHMARKS if (RESULTS / f"{name}.json").exists()]
    last_runs = _last_runs_of_each()
    figures = [
        dataclasses.replace(
            figure, carried_over_from="" if name in fresh else last_runs.get(name, "an earlier run")
        )
        for name in reported
        for figure in read_figures(name)
    ]
    now = time.gmtime()
    about = {
        "machine": machine(),
        "quick": quick,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", now),
        "fresh": sorted(fresh),
        "carried_over": [name for name in reported if name not in fresh],
    }
    # Named to the minute: two runs on one day (on two kinds of machine, say) both keep their record.
    dated = RESULTS / f"{time.strftime('%Y-%m-%dT%H%MZ', now)}.json"
    dated.write_text(
        json.dumps({**about, "figures": [figure.to_dict() for figure in figures]}, indent=2) + "\n"
    )
    run_script_in_dev_image(
        settings, "bench", ["benchmarks/plot_summary.py", str(dated.relative_to(ROOT))], writable=RESULTS
    )
    _print_table(figures, about)
    PERFORMANCE_DOC.write_text(_markdown(figures, about))


def _print_table(figures: list[Figure], about: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from tfdock_host import console

    table = Table(title=f"tfdock bench — {_machine_line(about)}")
    for column in ("group", "figure", "ours", "reference", "ratio", "goal", "", "measured"):
        table.add_column(column)
    for figure in figures:
        met = figure.goal_met()
        mark = "" if met is None else ("[green]met[/]" if met else "[red]missed[/]")
        table.add_row(
            figure.group,
            f"{figure.metric} [{figure.unit}]",
            spread(figure.ours),
            f"{spread(figure.reference)} {figure.reference_name}",
            f"{figure.ratio:.3g}",
            figure.goal_text(),
            mark,
            _measured(figure),
        )
    # In a log there is no terminal width to fit: a wide table beats a folded one.
    out = console.out if console.out.is_terminal else Console(width=170, highlight=False)
    out.print(table)


def _last_runs_of_each() -> dict[str, str]:
    """Each benchmark's latest run, by the dated records (oldest first: the names sort by time)."""
    last_runs = {}
    for path in sorted(RESULTS.glob("20*.json")):
        record = json.loads(path.read_text())
        for name in record.get("fresh", []):  # the earliest records did not list them
            last_runs[name] = f"the run of {record['measured_at']} ({path.name})"
    return last_runs


def _measured(figure: Figure) -> str:
    return f"carried over from {figure.carried_over_from}" if figure.carried_over_from else "fresh"


def _machine_line(about: dict[str, Any]) -> str:
    m = about["machine"]
    return f"{m['cores']} cores, {m['memory_gib']} GiB, Docker {m['engine']}, measured {about['measured_at']}"


def _markdown(figures: list[Figure], about: dict[str, Any]) -> str:
    rows = [
        "| group | figure | ours | reference | ratio | goal | | measured |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for figure in figures:
        met = figure.goal_met()
        verdict = "" if met is None else ("met" if met else "**missed**")
        cells = [figure.group, f"{figure.metric} [{figure.unit}]", spread(figure.ours)]
        cells += [f"{spread(figure.reference)} {figure.reference_name}", f"{figure.ratio:.3g}"]
        rows.append("| " + " | ".join([*cells, figure.goal_text(), verdict, _measured(figure)]) + " |")
    notes = [f"- {figure.metric}: {figure.note}" for figure in figures if figure.note]
    plots = sorted(path.name for path in RESULTS.glob("*.png"))
    return "\n".join(
        [
            "# Performance",
            "",
            "Regenerated by `invoke bench` (this page, `benchmarks/results/<yyyy-mm-ddThhmmZ>.json`, the",
            "plots).",
            "Every ratio is ours over a reference measured in the same run on the same machine;",
            "repeated timings show median (min..max). A row marked fresh was measured by the run that wrote",
            "this page; one carried over is an earlier run's (a quick run leaves the full training out).",
            "",
            f"Machine: {_machine_line(about)}{' (quick run)' if about['quick'] else ''}.",
            "",
            *rows,
            "",
            *(["Notes:", "", *notes, ""] if notes else []),
            *[f"![{name}](../benchmarks/results/{name})" for name in plots],
            "",
        ]
    )
