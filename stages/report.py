"""Stage report: the comparison table (Markdown) and the training-loss curves (PNG)."""
import argparse
import json
from pathlib import Path

from squad_ft.report import MODEL_LABELS, plot_losses, render
from squad_ft.params import load_params
from squad_ft.stage import atomic_output, read_record, run_stage


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--training", nargs="+", required=True, type=Path, help="train stages' metrics")
    parser.add_argument("--evaluations", nargs="+", required=True, type=Path, help="evaluate stages' metrics")
    parser.add_argument("--comparisons", nargs="*", default=[], type=Path, help="compare stages' metrics")
    parser.add_argument("--heldout-data", type=Path, help="the heldout stage's details")
    parser.add_argument("--loss-logs", nargs="+", required=True, metavar="MODE=PATH", help="dvclive loss.tsv per model")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--plot", required=True, type=Path)
    return parser.parse_args()


def main() -> None:
    paths = arguments()
    training = {record["mode"]: record for record in map(read_record, paths.training)}
    # each evaluation with its model's training figures: the report's rows are per model
    evaluations = {(record["eval_set"], record["mode"]): {**training[record["mode"]], **record}
                   for record in map(read_record, paths.evaluations)}
    comparisons = {record["eval_set"]: record for record in map(read_record, paths.comparisons)}
    heldout_data = json.loads(paths.heldout_data.read_text()) if paths.heldout_data else None
    report = render(evaluations, comparisons, heldout_data, load_params()["bootstrap"]["confidence"])
    with atomic_output(paths.out) as out:
        out.write_text(report)
    with atomic_output(paths.plot) as out:
        plot_losses({MODEL_LABELS[mode]: Path(path) for mode, path in (pair.split("=", 1) for pair in paths.loss_logs)}, out)
    print(report)


if __name__ == "__main__":
    run_stage(main)
