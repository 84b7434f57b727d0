"""The comparison report: Markdown tables from the metrics files (one in the reference experiment's shape,
one with every figure), and a PNG of the loss curves."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import pandas as pd  # noqa: E402

from squad_ft.reference import MACHINE as REFERENCE_MACHINE, MODEL as REFERENCE_MODEL, PUBLISHED  # noqa: E402
from squad_ft.stats import interval_of  # noqa: E402

MODEL_LABELS = {"full": "Full fine-tuning", "lora": "LoRA", "head": "Head only"}
SHORT_LABELS = {"full": "full", "lora": "LoRA", "head": "head"}  # in "LoRA - full" and the verdicts
SET_LABELS = {"test": "Test", "heldout": "Held-out"}
TRAINING_ROWS = {
    "epochs": ("Epochs", "{:g}"),
    "trainable_params": ("Trained params", "{:,}"),
    "total_params": ("Total params", "{:,}"),
    "train_runtime_s": ("Time to train", None),
    "train_features_per_s": ("Training throughput (features/s)", "{:.1f}"),
    "model_memory_mb": ("Memory with the model loaded", None),
    "peak_memory_mb": ("Peak memory while training", None),
    "initial_loss": ("Initial loss", "{:.2f}"),
    "final_loss": ("Final loss", "{:.2f}"),
    "validation_epoch": ("Epoch kept (best validation F1)", "{}"),
    "validation_f1": ("Validation: F1 of the epoch kept", "{:.1f}"),
}
SCORES = {"exact_match": "exact match", "f1": "F1"}


def difference_label(mode: str) -> str:
    """The column of `mode` minus full fine-tuning."""
    return f"{SHORT_LABELS[mode]} - full (paired)"


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _memory(megabytes: float) -> str:
    return f"{megabytes / 1024:.1f} GB" if megabytes >= 1024 else f"{megabytes:.0f} MB"


def _training_cell(key: str, value) -> str:
    if value is None:  # a record from before the row existed
        return ""
    if key == "train_runtime_s":
        return _duration(value)
    if key in ("model_memory_mb", "peak_memory_mb"):
        return _memory(value)
    return TRAINING_ROWS[key][1].format(value)


def _with_interval(value: float, interval: list[float], signed: bool = False) -> str:
    number = "{:+.1f}" if signed else "{:.1f}"
    return f"{number.format(value)} [{number.format(interval[0])}, {number.format(interval[1])}]"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.0f}%"


def verdict(interval: list[float], mode: str = "lora") -> str:
    """Whether a paired interval of `mode` minus full fine-tuning excludes zero, in words."""
    if interval[0] > 0:
        return f"{SHORT_LABELS[mode]} better (the interval excludes 0)"
    if interval[1] < 0:
        return "full fine-tuning better (the interval excludes 0)"
    return "within noise (the interval includes 0)"


def comparison_table(evaluations: dict[tuple[str, str], dict], comparisons: dict[tuple[str, str], dict]) -> pd.DataFrame:
    """Rows: training figures, then per evaluation set its questions, overlap and scores.

    `evaluations` maps (eval_set, mode) to an evaluate stage's record merged with its model's training
    record (metrics and details, `squad_ft.stage.read_record`); `comparisons` maps (eval_set, mode) to
    the compare stage's record of `mode` minus full fine-tuning. Columns: one per model, and one per
    paired difference from full fine-tuning on the score rows.
    """
    modes = [mode for mode in MODEL_LABELS if ("test", mode) in evaluations]
    compared = [mode for mode in modes if any(key[1] == mode for key in comparisons)]
    rows = {}
    for key, (label, _) in TRAINING_ROWS.items():
        rows[label] = {mode: _training_cell(key, evaluations["test", mode].get(key)) for mode in modes}
    for eval_set in (s for s in SET_LABELS if (s, modes[0]) in evaluations):
        name = SET_LABELS[eval_set]
        metrics = {mode: evaluations[eval_set, mode] for mode in modes}
        rows[f"{name}: questions"] = {mode: f"{metrics[mode][f'{eval_set}_examples']:,}" for mode in modes}
        rows[f"{name}: paragraph / article seen in training"] = {
            mode: f"{_percent(metrics[mode][f'{eval_set}_paragraph_overlap'])} / "
                  f"{_percent(metrics[mode][f'{eval_set}_article_overlap'])}" for mode in modes
        }
        for key, score in SCORES.items():
            row = {mode: _with_interval(metrics[mode][key], interval_of(metrics[mode], key)) for mode in modes}
            for mode in compared:
                if (eval_set, mode) in comparisons:
                    difference = comparisons[eval_set, mode]
                    row[difference_label(mode)] = _with_interval(
                        difference[f"{key}_difference"], interval_of(difference, f"{key}_difference"), signed=True)
            rows[f"{name}: {score}"] = row
    rows["Device"] = {mode: evaluations["test", mode]["device"] for mode in modes}
    columns = [MODEL_LABELS[mode] for mode in modes] + [difference_label(mode) for mode in compared]
    table = pd.DataFrame.from_dict(rows, orient="index").rename(columns=MODEL_LABELS).reindex(columns=columns)
    return table.fillna("").rename_axis("Metric")


def conclusions(comparisons: dict[tuple[str, str], dict]) -> list[str]:
    """One sentence per compared model, evaluation set and score: is its difference from full fine-tuning real?"""
    lines = []
    for (eval_set, mode), compared in comparisons.items():
        for key, score in SCORES.items():
            interval = interval_of(compared, f"{key}_difference")
            lines.append(
                f"{SET_LABELS[eval_set]} {score}, {SHORT_LABELS[mode]} - full fine-tuning on the same "
                f"{compared['questions']:,} questions: "
                f"{_with_interval(compared[f'{key}_difference'], interval, signed=True)}: {verdict(interval, mode)}."
            )
    return lines


def architecture_costs(benchmark: dict, mode: str, precision: str, epochs: float) -> dict | None:
    """What training `mode` for `epochs` epochs of the reference protocol costs on the benchmark's
    architecture in `precision`: {"train_runtime_s", "peak_memory_mb"}, from a benchmark JSON of
    `python -m benchmarks.run --architecture` (its seconds per reference epoch, extrapolated from
    measured steps); None if it has no such variant."""
    variant = benchmark["variants"].get(mode if precision == "fp32" else f"{mode}-{precision}")
    if not variant or "reference_epoch_s" not in variant:
        return None
    return {"train_runtime_s": variant["reference_epoch_s"] * epochs, "peak_memory_mb": variant["peak_memory_mb"]}


def reference_table(evaluations: dict[tuple[str, str], dict], benchmark: dict | None) -> pd.DataFrame:
    """The reference experiment's rows (epochs, trained params, time, memory, initial loss, test EM
    and F1) for full fine-tuning, LoRA and head: its published figures beside this run's, and where
    `benchmark` (a benchmark JSON of DistilBERT's architecture on this CPU) is given, the cost rows of
    that architecture on this machine, in this run's precision and epochs."""
    modes = [mode for mode in MODEL_LABELS if ("test", mode) in evaluations]
    columns: dict[str, dict] = {}
    for mode in modes:
        if mode in PUBLISHED:
            name = MODEL_LABELS[mode] + (' (its "LoRA")' if mode == "head" else "")
            columns[f"{name}: reference"] = {"published": PUBLISHED[mode]}
        columns[f"{MODEL_LABELS[mode]}: this run"] = {"run": evaluations["test", mode]}
    rows = {label: {} for label in ("Epochs", "Trained params", "Time to train", "Memory while training",
                                    "Initial loss", "Test: exact match", "Test: F1")}
    architecture_rows = {"Time to train, DistilBERT here, 4,000 questions": {},
                         "Memory while training, DistilBERT here": {}}
    for column, source in columns.items():
        if "published" in source:
            row = source["published"]
            cells = [f"{row['epochs']:g}", f"{row['trainable_params']:,}", _duration(row["train_runtime_s"]),
                     f"{row['peak_memory_gb']:.1f} GB", f"{row['initial_loss']:.2f}", f"{row['exact_match']:.1f}",
                     f"{row['f1']:.1f}"]
        else:
            run = source["run"]
            cells = [f"{run['epochs']:g}", f"{run['trainable_params']:,}", _duration(run["train_runtime_s"]),
                     _memory(run["peak_memory_mb"]), f"{run['initial_loss']:.2f}", f"{run['exact_match']:.1f}",
                     f"{run['f1']:.1f}"]
            costs = benchmark and architecture_costs(benchmark, run["mode"], run["precision"], run["epochs"])
            if costs:
                architecture_rows["Time to train, DistilBERT here, 4,000 questions"][column] = _duration(costs["train_runtime_s"])
                architecture_rows["Memory while training, DistilBERT here"][column] = _memory(costs["peak_memory_mb"])
        for label, cell in zip(rows, cells):
            rows[label][column] = cell
    if any(architecture_rows.values()):
        rows = {**dict(list(rows.items())[:4]), **architecture_rows, **dict(list(rows.items())[4:])}
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(columns))
    return table.fillna("").rename_axis("Reference experiment's rows")


def reference_notes(evaluations: dict[tuple[str, str], dict], benchmark: dict | None, benchmark_name: str | None) -> str:
    """What the reference table's columns measure, and what its head-only row explains."""
    run = evaluations["test", "full"]
    lines = [
        f"Reference: the published figures of `{REFERENCE_MODEL}` on an {REFERENCE_MACHINE}. This run: "
        f"`{run['inputs']['model']['source']}` on {run['device']}, CPU {run.get('cpu', 'unknown')} (resident "
        "memory); its scores are of another encoder wherever that is not the reference's."
    ]
    if "head" in {mode for _, mode in evaluations}:
        lines.append(
            "The reference's \"LoRA\" row trained 1,538 parameters, exactly DistilBERT's QA head: it is a frozen "
            "encoder with a trained head, as this run's head-only column, which is why it scored far below full "
            "fine-tuning at a fraction of the memory; LoRA with trained adapters is the LoRA column.")
    if benchmark:
        lines.append(
            f"DistilBERT here: distilbert-base-uncased's architecture with random weights (cost does not depend on "
            f"the weights' values), measured by the benchmark `{benchmark_name}` on this CPU model in this run's "
            f"precision; time is its seconds per epoch of the reference protocol's 4,000 training questions, "
            f"extrapolated from measured steps, times this run's "
            f"epochs.")
    else:
        lines.append("DistilBERT's architecture: no benchmark JSON for this CPU in benchmarks/results/ (`python -m "
                     "benchmarks.run --architecture distilbert-base-uncased`, docs/performance.md).")
    return "\n".join(f"- {line}" for line in lines)


def heldout_description(data: dict) -> str:
    """Where the held-out questions come from and what was dropped to keep them unseen."""
    dropped = data["dropped_seen_article"] + data["dropped_seen_paragraph_only"]
    return (
        f"Held-out set: {data['heldout_examples']:,} questions from {data['heldout_articles']:,} articles of "
        f"`{data['source']}` that the training split never saw; {dropped:,} of its {data['candidates']:,} "
        f"questions were dropped because their article ({data['dropped_seen_article']:,}) or only their paragraph "
        f"({data['dropped_seen_paragraph_only']:,}) occurs in the training split."
    )


def render(evaluations: dict, comparisons: dict, heldout_data: dict | None, confidence: float,
           benchmark: dict | None = None, benchmark_name: str | None = None) -> str:
    """The whole Markdown report."""
    parts = [
        "# Full fine-tuning vs LoRA vs the head alone on SQuAD v1.1",
        "## In the reference experiment's shape",
        reference_table(evaluations, benchmark).to_markdown(),
        reference_notes(evaluations, benchmark, benchmark_name),
        "## Every figure of this run",
        f"Scores are official SQuAD v1.1 exact match and F1 (0-100) with {confidence:.0%} bootstrap intervals "
        "over questions; the last columns are each model minus full fine-tuning, bootstrapped in pairs on the "
        "same questions.",
        comparison_table(evaluations, comparisons).to_markdown(),
        "\n".join(f"- {line}" for line in conclusions(comparisons)),
    ]
    if heldout_data:
        parts.append(heldout_description(heldout_data))
    return "\n\n".join(part for part in parts if part) + "\n"


def plot_losses(loss_logs: dict[str, Path], out: Path) -> None:
    """Training loss against optimizer step, one line per model, from dvclive's TSV logs."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, path in loss_logs.items():
        log = pd.read_csv(path, sep="\t")
        ax.plot(log["step"], log["loss"], marker=".", label=name)
    ax.set(xlabel="optimizer step", ylabel="training loss", title="Training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120, format="png")
    plt.close(fig)
