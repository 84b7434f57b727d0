"""The comparison table and the loss-curve plot, from metrics files and dvclive logs."""
from squad_ft.report import comparison_table, plot_losses

FULL = {"epochs": 3, "trainable_params": 66364418, "total_params": 66364418, "train_runtime_s": 229.4,
        "peak_memory_mb": 4710.4, "initial_loss": 2.2912, "final_loss": 0.9, "exact_match": 50.2, "f1": 63.04,
        "device": "cuda (NVIDIA GeForce RTX 3080 Ti, fp16)"}
LORA = {**FULL, "epochs": 10, "trainable_params": 1538, "train_runtime_s": 139.0, "peak_memory_mb": 1000.0,
        "exact_match": 12.1, "f1": 18.6}


def test_table_formats_every_row_for_each_model():
    table = comparison_table({"Full fine-tuning": FULL, "LoRA": LORA})
    assert table["Full fine-tuning"].to_dict() == {
        "Epochs": "3", "Trained params": "66,364,418", "Total params": "66,364,418", "Time to train": "3m49s",
        "Peak memory": "4.6 GB", "Initial loss": "2.29", "Final loss": "0.90", "Exact match": "50.2",
        "F1": "63.0", "Device": "cuda (NVIDIA GeForce RTX 3080 Ti, fp16)",
    }
    assert table.loc["Peak memory", "LoRA"] == "1000 MB"
    assert table.loc["Time to train", "LoRA"] == "2m19s"
    assert "| Trained params | 66,364,418" in table.to_markdown()


def test_loss_plot_is_a_png(tmp_path):
    logs = {}
    for name in ("full", "lora"):
        logs[name] = tmp_path / f"{name}.tsv"
        logs[name].write_text("timestamp\tstep\tloss\n0\t1\t5.9\n0\t10\t4.1\n0\t20\t3.0\n")
    plot_losses(logs, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
