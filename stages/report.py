"""Stage report: the comparison table (Markdown) and the training-loss curves (PNG)."""
from squad_ft.report import comparison_table, load_metrics, plot_losses
from squad_ft.stage import atomic_output, run_stage

MODELS = {"Full fine-tuning": "full", "LoRA": "lora"}


def main() -> None:
    metrics = load_metrics({label: f"metrics/{mode}.json" for label, mode in MODELS.items()})
    table = comparison_table(metrics).to_markdown()
    with atomic_output("metrics/report.md") as out:
        out.write_text(f"# Full fine-tuning vs LoRA on SQuAD v1.1\n\n{table}\n")
    with atomic_output("metrics/loss.png") as out:
        plot_losses({label: f"dvclive/{mode}/plots/metrics/loss.tsv" for label, mode in MODELS.items()}, out)
    print(table)


if __name__ == "__main__":
    run_stage(main)
