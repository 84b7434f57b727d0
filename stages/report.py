"""Stage report: the comparison tables (Markdown) and the training-loss curves (PNG)."""
import argparse
import json
import os
from pathlib import Path

from squad_ft.device import cpu_model
from squad_ft.params import load_params
from squad_ft.report import MODEL_LABELS, plot_losses, render
from squad_ft.stage import atomic_output, read_record, run_stage

ARCHITECTURE = "distilbert-base-uncased"  # the benchmark's architecture whose costs the report shows


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--training", nargs="+", required=True, type=Path, help="train stages' metrics")
    parser.add_argument("--validations", nargs="*", default=[], type=Path,
                        help="train stages' validation metrics (the epoch kept and its scores)")
    parser.add_argument("--evaluations", nargs="+", required=True, type=Path, help="evaluate stages' metrics")
    parser.add_argument("--comparisons", nargs="*", default=[], type=Path, help="compare stages' metrics")
    parser.add_argument("--heldout-data", type=Path, help="the heldout stage's details")
    parser.add_argument("--loss-logs", nargs="+", required=True, metavar="MODE=PATH", help="dvclive loss.tsv per model")
    parser.add_argument("--benchmarks", type=Path, help="benchmark JSONs (benchmarks/results/)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--plot", required=True, type=Path)
    return parser.parse_args()


def architecture_benchmark(folder: Path | None) -> tuple[str, dict] | tuple[None, None]:
    """(file name, content) of the newest benchmark JSON in `folder` of DistilBERT's architecture measured on
    this CPU model with this many cores (names start with their date), or (None, None)."""
    for path in sorted(folder.glob("*.json"), reverse=True) if folder and folder.is_dir() else []:
        benchmark = json.loads(path.read_text())
        if (benchmark.get("architecture"), benchmark.get("cpu_model"), benchmark.get("cpu_cores")) == (
                ARCHITECTURE, cpu_model(), os.cpu_count()):
            return path.name, benchmark
    return None, None


def main() -> None:
    paths = arguments()
    training = {record["mode"]: record for record in map(read_record, paths.training)}
    for record in map(read_record, paths.validations):
        training[record["mode"]].update(validation_epoch=f"{record['epoch']} of {record['epochs_run']}",
                                        validation_f1=record["f1"])
    # each evaluation with its model's training figures: the report's rows are per model
    evaluations = {(record["eval_set"], record["mode"]): {**training[record["mode"]], **record}
                   for record in map(read_record, paths.evaluations)}
    comparisons = {(record["eval_set"], record["mode"]): record for record in map(read_record, paths.comparisons)}
    heldout_data = json.loads(paths.heldout_data.read_text()) if paths.heldout_data else None
    name, benchmark = architecture_benchmark(paths.benchmarks)
    report = render(evaluations, comparisons, heldout_data, load_params()["bootstrap"]["confidence"], benchmark, name)
    with atomic_output(paths.out) as out:
        out.write_text(report)
    with atomic_output(paths.plot) as out:
        plot_losses({MODEL_LABELS[mode]: Path(path) for mode, path in (pair.split("=", 1) for pair in paths.loss_logs)}, out)
    print(report)


if __name__ == "__main__":
    run_stage(main)
