"""The comparison report: a Markdown table from the metrics files and a PNG of the loss curves."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import pandas as pd  # noqa: E402

ROWS = {
    "epochs": ("Epochs", "{:g}"),
    "trainable_params": ("Trained params", "{:,}"),
    "total_params": ("Total params", "{:,}"),
    "train_runtime_s": ("Time to train", None),
    "peak_memory_mb": ("Peak memory", None),
    "initial_loss": ("Initial loss", "{:.2f}"),
    "final_loss": ("Final loss", "{:.2f}"),
    "exact_match": ("Exact match", "{:.1f}"),
    "f1": ("F1", "{:.1f}"),
}


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


def _memory(megabytes: float) -> str:
    return f"{megabytes / 1024:.1f} GB" if megabytes >= 1024 else f"{megabytes:.0f} MB"


def _cell(key: str, value) -> str:
    if key == "train_runtime_s":
        return _duration(value)
    if key == "peak_memory_mb":
        return _memory(value)
    return ROWS[key][1].format(value)


def comparison_table(metrics: dict[str, dict]) -> pd.DataFrame:
    """One column per model (e.g. full, LoRA), one row per reported quantity, plus the device."""
    columns = {
        name: [_cell(key, values[key]) for key in ROWS] + [values["device"]]
        for name, values in metrics.items()
    }
    index = [label for label, _ in ROWS.values()] + ["Device"]
    return pd.DataFrame(columns, index=pd.Index(index, name="Metric"))


def load_metrics(paths: dict[str, Path]) -> dict[str, dict]:
    return {name: json.loads(Path(path).read_text()) for name, path in paths.items()}


def plot_losses(loss_logs: dict[str, Path], out: Path) -> None:
    """Training loss against optimizer step, one line per model, from dvclive's TSV logs."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, path in loss_logs.items():
        log = pd.read_csv(path, sep="\t")
        ax.plot(log["step"], log["loss"], label=name)
    ax.set(xlabel="optimizer step", ylabel="training loss", title="Training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120, format="png")
    plt.close(fig)
