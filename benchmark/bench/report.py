"""What `svt bench` writes and prints: the tidy CSV, the tables, the targets, the plot.

Input: the raw results of the workers (benchmark.bench.worker) and the plan (benchmark.bench.measure). The
CSV columns and metrics are documented in benchmark.commands.bench; every `ratio` is scratch / torch (for
the timings, the median of the back-to-back pairs' ratios: see benchmark.bench.worker).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from benchmark.bench.profile import profile_lines
from benchmark.bench.timing import linear_shapes, training_flops
from benchmark.core.tables import format_table
from scratch_nn.spec import Spec, settings_in_use

CSV_COLUMNS = ["spec", "dtype", "batch_size", "metric", "unit", "scratch", "torch", "ratio", "update_path"]
STEP_COLUMNS = ["batch", "scratch step", "torch step", "ratio", "fwd ratio", "bwd ratio", "upd ratio", "upd path",
                "scratch GFLOP/s", "torch GFLOP/s", "scratch img/s", "torch img/s", "infer ratio"]
NUMBER_COLUMNS = tuple(column for column in STEP_COLUMNS if column != "upd path")  # right-aligned

# The targets, read from this output.
TARGET_MLP_RATIO = 1.0  # every MLP, both dtypes: scratch/torch step time at every batch size
TARGET_CNN_RATIO = 1.3  # a CNN (a conv2d in its layers), both dtypes, every batch size: issue 27's floor
TARGET_WIDE_CEILING = 0.75  # wide spec, float32, batch 256: scratch's fraction of the matmul ceiling
TARGET_MEMORY_GROWTH_PCT = 5.0  # first epoch to last, each side
TARGET_MEMORY_FACTOR = 2.0  # scratch's training memory beyond the dataset, against torch's
BUSY_SHARE = 0.05  # other processes' share of the CPUs above which the report warns


@dataclass
class BenchResults:
    plan: object  # benchmark.bench.measure.Plan
    timing: dict
    memories: list[dict]
    rows: list[dict]  # the tidy CSV rows


def ratio(scratch: float, torch: float) -> float:
    return scratch / torch if torch else math.nan


def ceiling_of(step_row: dict) -> float:
    """The machine's ceiling during a row of the step sweep: the better of NumPy's and torch's
    large-matmul GFLOP/s, measured between that row's blocks (benchmark.bench.worker.MatmulCeiling)."""
    return max(step_row["ceiling"]["numpy"], step_row["ceiling"]["torch"])


def memory_summary(run: dict) -> dict:
    """Peak, training memory beyond the data-loaded baseline, and growth, of one side's memory run."""
    peaks = [epoch["VmHWM"] for epoch in run["epochs"]]
    return {"peak": max(peaks), "train": max(peaks) - run["baseline"]["VmRSS"],
            "growth": 100 * (peaks[-1] - peaks[0]) / peaks[0], "epochs": len(peaks)}


def tidy_rows(plan, timing: dict, memories: list[dict]) -> list[dict]:
    specs = {spec.name: spec for spec in plan.specs}
    rows: list[dict] = []

    def add(spec: str, dtype: str, batch_size, metric: str, unit: str, scratch: float, torch: float,
            paired: float | None = None) -> None:
        """One tidy row; its update_path is `path`, set by each loop below for the rows it adds."""
        rows.append({"spec": spec, "dtype": dtype, "batch_size": batch_size, "metric": metric, "unit": unit,
                     "scratch": scratch, "torch": torch,
                     "ratio": ratio(scratch, torch) if paired is None else paired, "update_path": path})

    for row in timing["steps"]:
        key, path = (row["spec"], row["dtype"], row["batch_size"]), row["update_path"]
        scratch, torch, paired = row["scratch"], row["torch"], row["paired_ratio"]
        for phase in ("step", "forward", "backward", "update", "inference"):
            add(*key, f"{phase}_time", "s", scratch[phase], torch[phase], paired[phase])
        add(*key, "inference_throughput", "images/s", row["batch_size"] / scratch["inference"],
            row["batch_size"] / torch["inference"], 1 / paired["inference"])  # a rate: the inverse
        gflop = training_flops(specs[row["spec"]].model, row["batch_size"]) / 1e9
        add(*key, "gflops", "GFLOP/s", gflop / scratch["step"], gflop / torch["step"], 1 / paired["step"])
        best = ceiling_of(row)
        add(*key, "ceiling_fraction", "fraction", gflop / scratch["step"] / best, gflop / torch["step"] / best,
            1 / paired["step"])
        add(*key, "matmul_ceiling", "GFLOP/s", row["ceiling"]["numpy"], row["ceiling"]["torch"])
    for entry in timing["epochs"]:
        path = entry["update_path"]
        add(entry["spec"], entry["dtype"], entry["batch_size"], "epoch_time", "s",
            entry["seconds"]["scratch"], entry["seconds"]["torch"])
    for scratch_run in (run for run in memories if run["side"] == "scratch"):
        torch_run = next(run for run in memories if run["side"] == "torch" and run["spec"] == scratch_run["spec"]
                         and run["dtype"] == scratch_run["dtype"])
        scratch, torch = memory_summary(scratch_run), memory_summary(torch_run)
        key, path = (scratch_run["spec"], scratch_run["dtype"], scratch_run["batch_size"]), scratch_run["update_path"]
        add(*key, "peak_rss", "MB", scratch["peak"], torch["peak"])
        add(*key, "train_memory", "MB", scratch["train"], torch["train"])
        add(*key, "memory_growth", "%", scratch["growth"], torch["growth"])
    return rows


def lookup(rows: list[dict], spec: str, dtype: str, metric: str, batch_size=None) -> dict | None:
    return next((row for row in rows if row["spec"] == spec and row["dtype"] == dtype and row["metric"] == metric
                 and (batch_size is None or row["batch_size"] == batch_size)), None)


# ---------------------------------------------------------------------------------------------
# Tables and text


def seconds_text(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def spec_label(spec: Spec) -> str:
    """`784-256-128-10 relu, sgd lr=0.05 momentum=0.9` (a CNN: `conv6@5-conv16@5-120-84-10 relu, ...`): the
    shape and the update being timed."""
    shapes = linear_shapes(spec.model)
    sizes = [fan_out for _, fan_out in shapes] if spec.model.input_shape != (shapes[0][0],) else [
        shapes[0][0]] + [fan_out for _, fan_out in shapes]
    layers = [entry.spec for entry in spec.model.entries]  # inside blocks too
    convolutions = [f"conv{layer.out_channels}@{layer.kernel_size}" for layer in layers
                    if layer.type == "conv2d"]  # a CNN: `conv6@5-conv16@5-120-84-10 relu, ...`
    sizes = [*convolutions, *sizes]
    activations = "/".join(dict.fromkeys(layer.type for layer in layers if layer.role == "activation"))
    train = spec.train
    extra = f" momentum={train.momentum:g}" if train.momentum and "momentum" in settings_in_use(spec) else ""
    return f"{'-'.join(map(str, sizes))} {activations}, {train.optimizer} lr={train.lr:g}{extra}"


def step_table(rows: list[dict], spec: str, dtype: str, batch_sizes) -> list[dict]:
    table = []
    for batch_size in batch_sizes:
        def get(metric: str) -> dict:
            return lookup(rows, spec, dtype, metric, batch_size)

        step, gflops, fraction = get("step_time"), get("gflops"), get("ceiling_fraction")
        throughput, inference = get("inference_throughput"), get("inference_time")
        table.append({
            "batch": batch_size,
            "scratch step": seconds_text(step["scratch"]), "torch step": seconds_text(step["torch"]),
            "ratio": f"{step['ratio']:.2f}",
            **{f"{name} ratio": f"{get(f'{phase}_time')['ratio']:.2f}"
               for name, phase in (("fwd", "forward"), ("bwd", "backward"), ("upd", "update"))},
            "upd path": step["update_path"],
            "scratch GFLOP/s": f"{gflops['scratch']:.1f} ({fraction['scratch']:.0%})",
            "torch GFLOP/s": f"{gflops['torch']:.1f} ({fraction['torch']:.0%})",
            "scratch img/s": f"{throughput['scratch']:,.0f}", "torch img/s": f"{throughput['torch']:,.0f}",
            "infer ratio": f"{inference['ratio']:.2f}",
        })
    return table


def section_lines(results: BenchResults, spec: Spec, dtype: str) -> tuple[str, list[dict], list[str]]:
    """The title, the step-table rows and the epoch/memory lines of one spec and dtype."""
    rows, timing, plan = results.rows, results.timing, results.plan
    sweep = [row for row in timing["steps"] if row["spec"] == spec.name and row["dtype"] == dtype]
    best = sorted(ceiling_of(row) for row in sweep)
    span = "-".join(dict.fromkeys(f"{value:.0f}" for value in (best[0], best[-1])))  # "213-220", or "213"
    size = sweep[0]["ceiling"]["size"]
    title = (f"{spec.name}, {dtype}: {spec_label(spec)}; matmul ceiling {span} GFLOP/s "
             f"({size}x{size}, the better of NumPy and torch, measured with each row)")
    notes = []
    epoch = lookup(rows, spec.name, dtype, "epoch_time")
    if epoch:
        notes.append(f"epoch ({plan.epoch_images:,} MNIST images, batch {epoch['batch_size']}): scratch "
                     f"{seconds_text(epoch['scratch'])}, torch {seconds_text(epoch['torch'])}, "
                     f"ratio {epoch['ratio']:.2f}")
    peak, train, growth = (lookup(rows, spec.name, dtype, metric) for metric in
                           ("peak_rss", "train_memory", "memory_growth"))
    if peak:
        notes.append(f"memory ({plan.memory_epochs} epochs of {plan.memory_images:,} images, batch "
                     f"{peak['batch_size']}, fresh process per side): peak RSS scratch {peak['scratch']:.0f} MB, "
                     f"torch {peak['torch']:.0f} MB; beyond the dataset scratch {train['scratch']:.1f} MB, torch "
                     f"{train['torch']:.1f} MB (ratio {train['ratio']:.2f}); growth epoch 1 -> {plan.memory_epochs} "
                     f"scratch {growth['scratch']:+.1f}%, torch {growth['torch']:+.1f}%")
    return title, step_table(rows, spec.name, dtype, plan.batch_sizes), notes


def environment_lines(results: BenchResults) -> list[str]:
    env = results.timing["environment"]
    load_start, load_end = env["load_average_start"][0], env["load_average_end"][0]
    lines = [
        f"threads: {results.plan.threads} requested; OpenBLAS (NumPy) reports {env['openblas_threads']}, torch "
        f"reports {env['torch_threads']}; {env['cores_usable']} usable cores",
        f"libraries: NumPy {env['numpy']} ({env['numpy_blas']}), torch {env['torch']} ({env['torch_blas']}); "
        f"torch optimizer path: {env['torch_optimizer']}; Python {env['python']}",
        f"NumPy's OpenBLAS kernels: {env.get('openblas_core') or ('unknown' if env['openblas_threads'] else 'n/a')}"
        + "".join(f"; {name}={value}" for name, value in env.get("blas_variables", {}).items() if value is not None),
        f"timing: median of {results.plan.repeats} interleaved blocks per side (each >= "
        f"{results.plan.min_block_seconds * 1e3:g} ms) after a warm-up; ratio = scratch / torch time",
        f"machine: other processes used {env['others_cpu_share']:.0%} of all CPU time during the timing run "
        f"(load average {load_start:.2f} at its start, {load_end:.2f} at its end)",
    ]
    if env.get("blas_kernel_hint"):
        lines.append(f"note: {env['blas_kernel_hint']}")
    if env["others_cpu_share"] > BUSY_SHARE:
        lines.append("warning: the machine was busy with other work during the run; absolute times are noisy, "
                     "the interleaved ratios less so")
    if results.plan.quick:
        lines.append("--quick: a smoke run; the figures are indicative only")
    return lines


def targets(results: BenchResults) -> list[dict]:
    """The issue's targets that this run's rows can answer, each with the measured value."""
    rows, found = results.rows, []
    for spec in results.plan.specs:
        cnn = any(entry.spec.type == "conv2d" for entry in spec.model.entries)
        for dtype in results.plan.dtypes:
            ratios = {row["batch_size"]: row["ratio"] for row in rows
                      if row["spec"] == spec.name and row["dtype"] == dtype and row["metric"] == "step_time"}
            if not ratios:
                continue
            worst = max(ratios, key=ratios.get)
            limit = TARGET_CNN_RATIO if cnn else TARGET_MLP_RATIO
            found.append({"target": f"{spec.name} {dtype}: step ratio <= {limit:g} at every batch size",
                          "measured": f"worst {ratios[worst]:.2f} at batch {worst}", "holds": ratios[worst] <= limit})
    wide = lookup(rows, "wide", "float32", "ceiling_fraction", 256)
    if wide:
        found.append({"target": f"wide float32 batch 256: scratch >= {TARGET_WIDE_CEILING:.0%} of the matmul ceiling",
                      "measured": f"{wide['scratch']:.1%} (torch {wide['torch']:.1%})",
                      "holds": wide["scratch"] >= TARGET_WIDE_CEILING})
    growth = [row for row in rows if row["metric"] == "memory_growth"]
    if growth:
        worst = max(max(row["scratch"], row["torch"]) for row in growth)
        found.append({"target": f"memory growth from the first epoch to the last <= {TARGET_MEMORY_GROWTH_PCT:g}%",
                      "measured": f"worst {worst:+.1f}%", "holds": worst <= TARGET_MEMORY_GROWTH_PCT})
        train = [row for row in rows if row["metric"] == "train_memory"]
        worst_ratio = max(row["ratio"] for row in train)
        found.append({"target": f"scratch training memory beyond the dataset <= {TARGET_MEMORY_FACTOR:g}x torch's",
                      "measured": f"worst {worst_ratio:.2f}x", "holds": worst_ratio <= TARGET_MEMORY_FACTOR})
    return found


def profiled_rows(results: BenchResults, spec: Spec, dtype: str) -> list[dict]:
    """The timing rows of one spec and dtype that carry a per-op profile (`svt bench --profile`)."""
    return [row for row in results.timing["steps"]
            if row["spec"] == spec.name and row["dtype"] == dtype and "profile" in row]


def terminal_report(results: BenchResults) -> str:
    parts = []
    for spec in results.plan.specs:
        for dtype in results.plan.dtypes:
            title, table, notes = section_lines(results, spec, dtype)
            parts.append("\n".join([title, format_table(table, STEP_COLUMNS, right=NUMBER_COLUMNS), *notes]))
            parts += ["\n".join(profile_lines(row)) for row in profiled_rows(results, spec, dtype)]
    parts.append("\n".join(environment_lines(results)))
    parts.append("\n".join(["targets:"] + [f"  {'ok  ' if row['holds'] else 'MISS'} {row['target']}: {row['measured']}"
                                           for row in targets(results)]))
    return "\n\n".join(parts)


def markdown_table(rows: list[dict], columns: list[str], right: tuple[str, ...] = ()) -> str:
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---:" if column in right else "---" for column in columns) + "|"]
    lines += ["| " + " | ".join(str(row[column]) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def markdown_report(results: BenchResults) -> str:
    parts = ["# svt bench: scratch vs torch, speed and memory", ""]
    parts += [f"- {line}" for line in environment_lines(results)]
    parts += ["", "FLOPs per training step: one product per weight layer, 2·N·in·out for a Linear and "
              "2·N·Ho·Wo·O·(C/G)·kH·kW for a Conv2d, counted three times (forward, weight gradient, input "
              "gradient; no input gradient for the first weight layer); pooling, batch-norm and other "
              "elementwise work not counted. "
              "GFLOP/s in parentheses: the fraction of the matmul ceiling measured with that row. `upd path`: the code "
              "that ran scratch's optimiser update (`openblas`: OpenBLAS's level-1 routines on its threads; `numpy`: "
              "NumPy ufuncs on one core; `flat`: once on the array of all parameters).", ""]
    for spec in results.plan.specs:
        for dtype in results.plan.dtypes:
            title, table, notes = section_lines(results, spec, dtype)
            parts += [f"## {title}", "", markdown_table(table, STEP_COLUMNS, right=NUMBER_COLUMNS), ""]
            parts += [f"- {note}" for note in notes] + [""]
            for row in profiled_rows(results, spec, dtype):
                title_line, *lines = profile_lines(row)
                parts += [f"### {title_line}", "", "```text", *lines, "```", ""]
    parts += ["## Targets", "", markdown_table(
        [{"target": row["target"], "measured": row["measured"], "holds": "yes" if row["holds"] else "**no**"}
         for row in targets(results)], ["target", "measured", "holds"]), ""]
    parts += ["Every figure is also in `bench.csv` (one row per measurement, with the ratio) and every raw "
              "repeat in `bench.json`.", ""]
    return "\n".join(parts)


def plot_step_times(results: BenchResults, path: Path) -> None:
    """Step time against batch size, log-log, scratch and torch, one panel per spec and dtype."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    plan = results.plan
    figure, axes = plt.subplots(len(plan.dtypes), len(plan.specs), squeeze=False, sharex=True,
                                figsize=(5.5 * len(plan.specs), 4 * len(plan.dtypes)))
    for row, dtype in enumerate(plan.dtypes):
        for column, spec in enumerate(plan.specs):
            axis = axes[row][column]
            for side, style in (("scratch", "o-"), ("torch", "s--")):
                times = [lookup(results.rows, spec.name, dtype, "step_time", size)[side] * 1e3
                         for size in plan.batch_sizes]
                axis.plot(plan.batch_sizes, times, style, label=side)
            axis.set(xscale="log", yscale="log", title=f"{spec.name}, {dtype}", xlabel="batch size",
                     ylabel="ms per training step")
            axis.set_xticks(plan.batch_sizes, [str(size) for size in plan.batch_sizes])
            axis.xaxis.set_minor_locator(ticker.NullLocator())
            axis.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))  # 0.1, 0.2, 0.5, 1, ...
            axis.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
            axis.yaxis.set_minor_formatter(ticker.NullFormatter())
            axis.grid(True, which="both", alpha=0.3)
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_outputs(plan, timing: dict, memories: list[dict], folder: Path) -> BenchResults:
    """bench.csv, bench.md, bench.json and step_time.png into `folder` (the caller renames it into place)."""
    import pandas as pd

    results = BenchResults(plan, timing, memories, tidy_rows(plan, timing, memories))
    frame = pd.DataFrame(results.rows, columns=CSV_COLUMNS)
    frame["batch_size"] = frame["batch_size"].astype("Int64")  # whole numbers, not 64.0
    frame.to_csv(folder / "bench.csv", index=False)
    (folder / "bench.md").write_text(markdown_report(results), encoding="utf-8")
    (folder / "bench.json").write_text(json.dumps({"timing": timing, "memory": memories}, indent=1), encoding="utf-8")
    plot_step_times(results, folder / "step_time.png")
    return results
