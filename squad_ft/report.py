"""The comparison report: one Markdown table from the metrics files, and a PNG of the loss curves."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import pandas as pd  # noqa: E402

from squad_ft.stats import interval_of  # noqa: E402

MODEL_LABELS = {"full": "Full fine-tuning", "lora": "LoRA"}
SET_LABELS = {"test": "Test", "heldout": "Held-out"}
DIFFERENCE = "LoRA - full (paired)"
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
}
SCORES = {"exact_match": "exact match", "f1": "F1"}


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


def _memory(megabytes: float) -> str:
    return f"{megabytes / 1024:.1f} GB" if megabytes >= 1024 else f"{megabytes:.0f} MB"


def _training_cell(key: str, value) -> str:
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


def verdict(interval: list[float]) -> str:
    """Whether a paired interval of LoRA minus full fine-tuning excludes zero, in words."""
    if interval[0] > 0:
        return "LoRA better (the interval excludes 0)"
    if interval[1] < 0:
        return "full fine-tuning better (the interval excludes 0)"
    return "within noise (the interval includes 0)"


def comparison_table(evaluations: dict[tuple[str, str], dict], comparisons: dict[str, dict]) -> pd.DataFrame:
    """Rows: training figures, then per evaluation set its questions, overlap and scores.

    `evaluations` maps (eval_set, mode) to an evaluate stage's record merged with its model's training
    record (metrics and details, `squad_ft.stage.read_record`); `comparisons` maps eval_set to the
    compare stage's record. Columns: one per model, and the
    paired difference of LoRA minus full fine-tuning on the score rows.
    """
    modes = [mode for mode in MODEL_LABELS if ("test", mode) in evaluations]
    rows = {}
    for key, (label, _) in TRAINING_ROWS.items():
        rows[label] = {mode: _training_cell(key, evaluations["test", mode][key]) for mode in modes}
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
            if eval_set in comparisons:
                compared = comparisons[eval_set]
                row[DIFFERENCE] = _with_interval(
                    compared[f"{key}_difference"], interval_of(compared, f"{key}_difference"), signed=True)
            rows[f"{name}: {score}"] = row
    rows["Device"] = {mode: evaluations["test", mode]["device"] for mode in modes}
    columns = [MODEL_LABELS[mode] for mode in modes] + ([DIFFERENCE] if comparisons else [])
    table = pd.DataFrame.from_dict(rows, orient="index").rename(columns=MODEL_LABELS).reindex(columns=columns)
    return table.fillna("").rename_axis("Metric")


def conclusions(comparisons: dict[str, dict]) -> list[str]:
    """One sentence per evaluation set and score: is LoRA's difference from full fine-tuning real?"""
    lines = []
    for eval_set, compared in comparisons.items():
        for key, score in SCORES.items():
            interval = interval_of(compared, f"{key}_difference")
            lines.append(
                f"{SET_LABELS[eval_set]} {score}, LoRA - full fine-tuning on the same {compared['questions']:,} "
                f"questions: {_with_interval(compared[f'{key}_difference'], interval, signed=True)}: "
                f"{verdict(interval)}."
            )
    return lines


def heldout_description(data: dict) -> str:
    """Where the held-out questions come from and what was dropped to keep them unseen."""
    dropped = data["dropped_seen_article"] + data["dropped_seen_paragraph_only"]
    return (
        f"Held-out set: {data['heldout_examples']:,} questions from {data['heldout_articles']:,} articles of "
        f"`{data['source']}` that the training split never saw; {dropped:,} of its {data['candidates']:,} "
        f"questions were dropped because their article ({data['dropped_seen_article']:,}) or only their paragraph "
        f"({data['dropped_seen_paragraph_only']:,}) occurs in the training split."
    )


def render(evaluations: dict, comparisons: dict, heldout_data: dict | None, confidence: float) -> str:
    """The whole Markdown report."""
    table = comparison_table(evaluations, comparisons).to_markdown()
    parts = [
        "# Full fine-tuning vs LoRA on SQuAD v1.1",
        f"Scores are official SQuAD v1.1 exact match and F1 (0-100) with {confidence:.0%} bootstrap intervals "
        "over questions; the last column is LoRA minus full fine-tuning, bootstrapped in pairs on the same "
        "questions.",
        table,
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
