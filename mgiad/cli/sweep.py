"""``mgiad experiments``, ``mgiad sweep``, ``mgiad report`` and ``mgiad plot``.

Examples::

    mgiad experiments                                  # the built-in experiments
    mgiad sweep table_IV                               # every row × seed of Table IV, paper recipe
    mgiad sweep IV --epochs=5 --subset=10000 --schedule=cosine   # a reduced-budget variant
    mgiad sweep fig7 --workers 4                       # 4 runs at a time, GPUs round-robin
    mgiad sweep table_II --slurm --partition gpu --time 720      # a Slurm job array (submitit)
    mgiad report table_IV                              # our numbers beside the paper's
    mgiad plot figure_7                                # Figure 7 and training curves, PNG + SVG

EXPERIMENT is a built-in name (``table_I`` ... ``table_IX``, ``figure_7``; also ``IV``,
``table4``, ``fig7``), the path of an experiment file (.toml/.json, see ``mgiad.experiments.spec``)
or, for report and plot, a results directory.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

from mgiad.training.values import check_count, check_writable_dir

_OVERRIDES_HELP = (
    "Any RunConfig key can be overridden for every run as --key=value (as for `mgiad train`, e.g. "
    "--epochs=5 --subset_train=10000 --model_kwargs.widths=(8,16,32)). Overrides that change "
    "results make a reduced-budget variant with its own results directory "
    "(EXPERIMENT-reduced-HASH) whose records say reduced: true; --device, --threads, --data_dir, "
    "--eval_every, --time_budget_s ... do not."
)


def _overrides(args: argparse.Namespace, extra: list[str]) -> list[str]:
    extra = list(extra)
    if getattr(args, "subset", None) is not None:
        extra.append(f"--subset_train={args.subset}")
    return extra


def cmd_experiments(args: argparse.Namespace, extra: list[str]) -> int:
    """List the built-in experiments, or the rows of one."""
    from mgiad.experiments.spec import list_experiments, load_experiment

    if args.experiment is None:
        for exp in list_experiments():
            with_paper = sum(1 for r in exp.rows if r.paper is not None)
            print(f"{exp.name:<11} {len(exp.rows):>2} rows × {len(exp.seeds)} seeds  {exp.dataset:<12}  "
                  f"{exp.title}" + ("" if with_paper == len(exp.rows) else f" ({len(exp.rows) - with_paper} rows without paper numbers)"))
        print("\nrun one with `mgiad sweep NAME`; see its rows with `mgiad experiments NAME`")
        return 0
    exp = load_experiment(args.experiment)
    print(f"{exp.name}: {exp.title}")
    print(f"dataset {exp.dataset}, seeds {list(exp.seeds)}, recipe "
          + ", ".join(f"{k}={v}" for k, v in exp.recipe.items()))
    width = max(len(r.slug) for r in exp.rows)
    for i, r in enumerate(exp.rows, 1):
        kw = ", ".join(f"{k}={v}" for k, v in r.kwargs.items())
        paper = (f"paper {r.paper.weights_k}k, {r.paper.test}%" if r.paper and r.paper.test is not None
                 else "no paper numbers")
        print(f"{i:>3}  {r.slug:<{width}}  {r.model}({kw})" + (f" [{r.dataset}]" if r.dataset != exp.dataset else "")
              + f"  — {paper}")
    return 0


def cmd_sweep(args: argparse.Namespace, extra: list[str]) -> int:
    """Run (or submit) every unfinished run of an experiment."""
    from mgiad.experiments.records import plan_states
    from mgiad.experiments.slurm import submit_slurm
    from mgiad.experiments.sweep import sweep
    from mgiad.experiments.variant import make_variant, parse_seeds, plan

    for flag in ("workers", "time", "cpus_per_task", "mem_gb", "array_parallelism"):
        check_count(f"--{flag.replace('_', '-')}", getattr(args, flag))
    check_count("--gpus-per-task", args.gpus_per_task, minimum=0)  # 0: a CPU-only job
    variant = make_variant(args.experiment, _overrides(args, extra), args.results_dir)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    jobs = plan(variant, seeds=seeds, rows=args.rows)
    if args.dry_run:
        print(f"{variant.name}: {len(jobs)} runs in {variant.dir}"
              + (" (REDUCED budget: " + " ".join(f"--{k}={v}" for k, v in variant.changing) + ")"
                 if variant.reduced else ""))
        states, _ = plan_states(variant, jobs, reuse=not args.no_reuse)
        for job in jobs:
            print(f"  {states[job.run_id]:<10} {job.run_id}")
        return 0
    check_writable_dir("--results-dir", variant.dir)  # before any run starts
    if args.slurm:
        extra_params: dict[str, Any] = {}
        if args.slurm_setup:
            extra_params["slurm_setup"] = list(args.slurm_setup)
        submitted = submit_slurm(
            variant, jobs, cluster=args.slurm_cluster, partition=args.partition, time_min=args.time,
            gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb,
            array_parallelism=args.array_parallelism, extra=extra_params, reuse=not args.no_reuse)
        if args.wait and submitted:
            failed = 0
            for job in submitted:
                try:
                    result = job.result()
                    print(f"{result['run_id']}: {result['status']}")
                    failed += result["status"] not in ("done", "recorded")
                except Exception as e:  # submitit re-raises the task's error
                    print(f"task {job.job_id} failed: {e}", file=sys.stderr)
                    failed += 1
            _hint(variant)
            return 1 if failed else 0
        if submitted:
            print(f"follow with `squeue --me`; when done: mgiad report {args.experiment} "
                  + " ".join(_overrides(args, extra)))
        return 0
    _check_data_dirs(jobs)
    gpus = [g for g in args.gpus.split(",") if g] if args.gpus is not None else None
    try:
        result = sweep(variant, jobs, workers=args.workers, gpus=gpus, reuse=not args.no_reuse)
    except KeyboardInterrupt:
        print("mgiad sweep: interrupted; every run keeps its last finished epoch, run the same "
              "command again to resume", file=sys.stderr)
        return 130
    counts = {s: result.count(s) for s in sorted(set(result.status.values()))}
    print(f"{variant.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" — records in {variant.records_path}")
    if result.count("busy"):
        print("busy runs are being trained by another process; sweep again when it is done")
    if result.count("paused"):
        print("paused runs stopped at their time budget; sweep again to continue them")
    _hint(variant)
    return 0 if result.ok else 1


def _check_data_dirs(jobs: list[Any]) -> None:
    """A ``data_dir`` that does not hold its data set fails here, before any run starts (and
    writes a lock or a run directory); on a cluster the data may live on the nodes only."""
    from mgiad.data.datasets import check_data_dir

    for dataset, data_dir in sorted({(j.config["dataset"], j.config.get("data_dir")) for j in jobs
                                     if j.config.get("data_dir") and not j.config.get("download")}):
        check_data_dir(dataset, data_dir)


def _hint(variant: Any) -> None:
    print(f"report: mgiad report {variant.dir}   plots: mgiad plot {variant.dir}")


def _no_records(args: argparse.Namespace, variant: Any, what: str) -> bool:
    """True (after saying what is missing and how to make it) if the variant has no records and
    no ``--out`` was given: then nothing is written, least of all into the results directory."""
    from mgiad.experiments.records import read_records
    from mgiad.experiments.variant import plan

    plan(variant)  # a bad override or row fails first, with its own message
    if read_records(variant.records_path) or args.out is not None:
        return False
    experiment = variant.experiment.name if Path(args.experiment).is_dir() else args.experiment
    sweep = " ".join(["mgiad sweep", experiment, *variant.overrides]
                     + ([f"--results-dir {args.results_dir}"] if args.results_dir != "results" else []))
    print(f"mgiad {args.command}: no records yet in {variant.records_path}; `{sweep}` makes them. "
          f"{what}; nothing written (--out DIR writes the files anyway)", file=sys.stderr)
    return True


def cmd_report(args: argparse.Namespace, extra: list[str]) -> int:
    """Print the table and write report.md / report.csv next to the records (or in --out).

    With no records yet the table (the paper's numbers, our weight counts) is printed, and
    written only where ``--out`` says."""
    from mgiad.experiments.report import build_report, write_report
    from mgiad.experiments.variant import find_variant

    if args.out is not None:
        check_writable_dir("--out", args.out)
    variant = find_variant(args.experiment, _overrides(args, extra), args.results_dir,
                           log=lambda m: print(m, file=sys.stderr))
    if _no_records(args, variant, "Showing the paper's numbers only"):
        text, markdown, csv_text = build_report(variant)
        print({"markdown": markdown, "csv": csv_text}.get(args.format, text), end="")
        return 0
    if args.out is None:
        check_writable_dir("--results-dir", variant.dir)
    text, files = write_report(variant, args.out)
    if args.format == "markdown":
        print(files[0].read_text(), end="")
    elif args.format == "csv":
        print(files[1].read_text(), end="")
    else:
        print(text, end="")
    print("wrote " + ", ".join(str(f) for f in files), file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace, extra: list[str]) -> int:
    """Draw weights vs accuracy (Figure 7 style) and the training curves."""
    from mgiad.experiments.plot import plot_experiment
    from mgiad.experiments.variant import find_variant

    if args.out is not None:
        check_writable_dir("--out", args.out)
    variant = find_variant(args.experiment, _overrides(args, extra), args.results_dir,
                           log=lambda m: print(m, file=sys.stderr))
    if _no_records(args, variant, "No plot drawn"):
        return 0
    if args.out is None:
        check_writable_dir("--results-dir", variant.dir)
    files = plot_experiment(variant, args.out)
    print("\n".join(str(f) for f in files))
    return 0


def _common(p: argparse.ArgumentParser, *, subset: bool = True) -> None:
    p.add_argument("experiment", metavar="EXPERIMENT",
                   help="table_I ... table_IX, figure_7 (also IV, table4, fig7), or a .toml/.json file")
    p.add_argument("--results-dir", default="results", metavar="DIR",
                   help="where results live (default: results)")
    if subset:
        p.add_argument("--subset", type=int, metavar="N", help="shorthand for --subset_train=N")


def add_commands(sub: Any) -> None:
    """Register ``experiments``, ``sweep``, ``report`` and ``plot``."""
    p = sub.add_parser("experiments", help="list the built-in experiments (paper tables, Figure 7)",
                       description="List the built-in experiments, or the rows of one.")
    p.add_argument("experiment", nargs="?", metavar="EXPERIMENT")
    p.set_defaults(func=cmd_experiments)

    # allow_abbrev=False: an override such as --seed=1 must not be read as --seeds
    p = sub.add_parser(
        "sweep", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        help="run every row × seed of an experiment that has not finished",
        description=textwrap.fill(
            "Run every row × seed of an experiment that has not finished yet: finished runs are "
            "skipped, interrupted ones resume from their last epoch. Each finished run appends "
            "one record to RESULTS_DIR/VARIANT/records.jsonl.", 88),
        epilog=textwrap.fill(_OVERRIDES_HELP, 88),
    )
    _common(p)
    p.add_argument("--seeds", metavar="LIST", help="seeds to run, e.g. 0,1 or 0-4 (default: the experiment's)")
    p.add_argument("--rows", action="append", metavar="PATTERN",
                   help="only these rows: a label, or comma-separated slugs, shell patterns or "
                   "1-based numbers (see `mgiad experiments EXPERIMENT`); repeatable")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="runs at a time on this machine, each in its own process (default 1)")
    p.add_argument("--gpus", metavar="LIST", help="GPU ids for the workers, round-robin "
                   "(default: $CUDA_VISIBLE_DEVICES or every GPU)")
    p.add_argument("--no-reuse", action="store_true",
                   help="train even when another experiment finished a run of the same configuration")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state, run nothing")
    s = p.add_argument_group("Slurm (through submitit; pip install 'mgiad[slurm]')")
    s.add_argument("--slurm", action="store_true", help="submit the unfinished runs as a Slurm job array")
    s.add_argument("--partition", help="Slurm partition")
    s.add_argument("--time", type=int, default=24 * 60, metavar="MIN",
                   help="time limit per run in minutes (default 1440); a run that reaches it is "
                   "requeued and resumes from its last epoch")
    s.add_argument("--gpus-per-task", type=int, default=1, metavar="N", help="GPUs per run (default 1)")
    s.add_argument("--cpus-per-task", type=int, default=8, metavar="N", help="CPU cores per run (default 8)")
    s.add_argument("--mem-gb", type=int, metavar="N", help="memory per run in GB")
    s.add_argument("--array-parallelism", type=int, default=64, metavar="N",
                   help="runs of the array running at once (default 64)")
    s.add_argument("--slurm-setup", action="append", metavar="CMD",
                   help="shell line run before each task, e.g. 'module load cuda' (repeatable)")
    s.add_argument("--slurm-cluster", default=None, metavar="NAME",
                   help="submitit cluster: slurm (default when sbatch exists), local or debug (tests)")
    s.add_argument("--wait", action="store_true", help="wait for the array and print each run's result")
    p.set_defaults(func=cmd_sweep, accepts_overrides=True)

    p = sub.add_parser(
        "report", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        help="the experiment's table: our numbers beside the paper's, with the difference",
        description=textwrap.fill(
            "Print the experiment's table in the paper's layout (weights, test accuracy mean ± "
            "std, train accuracy; ours, the paper's and Δ) and write report.md and report.csv "
            "next to the records. Without overrides: the paper-recipe results, else the newest "
            "reduced variant; with overrides: the variant they select. Before any record "
            "exists it prints the paper's numbers and writes nothing, unless --out is given.", 88),
    )
    _common(p)
    p.add_argument("--format", choices=("text", "markdown", "csv"), default="text",
                   help="what to print (default text); both files are written (once there are "
                   "records, or with --out)")
    p.add_argument("--out", metavar="DIR", help="write the files here (default: the results "
                   "directory, and only once it holds records)")
    p.set_defaults(func=cmd_report, accepts_overrides=True)

    p = sub.add_parser(
        "plot", allow_abbrev=False,
        help="weights vs test accuracy (Figure 7) and training curves, PNG and SVG",
        description="Draw weights (log) vs test accuracy, ours filled and the paper's hollow, one "
        "marker and colour per model family (for figure_7: the paper's Figure 7), and the test "
        "accuracy and loss per epoch of every run; PNG and SVG. Before any record exists it "
        "draws nothing, unless --out is given (then the paper's points alone).",
    )
    _common(p)
    p.add_argument("--out", metavar="DIR", help="write the files here (default: the results "
                   "directory, and only once it holds records)")
    p.set_defaults(func=cmd_plot, accepts_overrides=True)
