"""The comparison report: training rows, scores with intervals per evaluation set, the verdicts."""
from squad_ft.report import comparison_table, plot_losses, render, verdict

TRAINING = {"precision": "fp16", "inputs": {"model": {"source": "distilbert-base-uncased"}}, "epochs": 3, "trainable_params": 66364418, "total_params": 66364418, "train_runtime_s": 229.4,
            "train_features_per_s": 52.96, "model_memory_mb": 512.0, "peak_memory_mb": 4710.4, "initial_loss": 2.2912, "final_loss": 0.9,
            "device": "cuda (NVIDIA GeForce RTX 3080 Ti, fp16)"}


def evaluation(mode, eval_set, em, f1, overlap, **training):
    return {**TRAINING, **training, "mode": mode, "eval_set": eval_set, "exact_match": em, "f1": f1,
            "exact_match_ci_low": em - 3, "exact_match_ci_high": em + 3, "f1_ci_low": f1 - 2.5, "f1_ci_high": f1 + 2.5,
            f"{eval_set}_examples": 1000,
            f"{eval_set}_paragraph_overlap": overlap, f"{eval_set}_article_overlap": 1.0 if overlap else 0.0}


EVALUATIONS = {
    ("test", "full"): evaluation("full", "test", 50.2, 63.04, 0.984),
    ("test", "lora"): evaluation("lora", "test", 48.0, 61.0, 0.984, epochs=10, trainable_params=1538,
                                 train_runtime_s=139.0, peak_memory_mb=1000.0),
    ("heldout", "full"): evaluation("full", "heldout", 40.0, 52.0, 0.0),
    ("heldout", "lora"): evaluation("lora", "heldout", 35.0, 47.5, 0.0),
}
COMPARISONS = {
    ("test", "lora"): {"mode": "lora", "eval_set": "test", "questions": 1000, "exact_match_difference": -2.2,
             "exact_match_difference_ci_low": -5.1, "exact_match_difference_ci_high": 0.6, "f1_difference": -2.04,
             "f1_difference_ci_low": -4.6, "f1_difference_ci_high": 0.5},
    ("heldout", "lora"): {"mode": "lora", "eval_set": "heldout", "questions": 1000, "exact_match_difference": -5.0,
                "exact_match_difference_ci_low": -7.9, "exact_match_difference_ci_high": -2.1, "f1_difference": -4.5,
                "f1_difference_ci_low": -7.0, "f1_difference_ci_high": -2.0},
}


def test_table_has_training_rows_and_scores_with_intervals_per_set():
    table = comparison_table(EVALUATIONS, COMPARISONS)
    assert list(table.columns) == ["Full fine-tuning", "LoRA", "LoRA - full (paired)"]
    full = table["Full fine-tuning"].to_dict()
    assert {key: full[key] for key in ("Epochs", "Trained params", "Time to train", "Training throughput (features/s)",
                                       "Memory with the model loaded", "Peak memory while training",
                                       "Initial loss")} == {
        "Epochs": "3", "Trained params": "66,364,418", "Time to train": "3m49s",
        "Training throughput (features/s)": "53.0", "Memory with the model loaded": "512 MB",
        "Peak memory while training": "4.6 GB", "Initial loss": "2.29"}
    assert table.loc["Peak memory while training", "LoRA"] == "1000 MB"
    assert table.loc["Test: F1", "Full fine-tuning"] == "63.0 [60.5, 65.5]"
    assert table.loc["Test: paragraph / article seen in training", "LoRA"] == "98% / 100%"
    assert table.loc["Held-out: paragraph / article seen in training", "LoRA"] == "0% / 0%"
    assert table.loc["Held-out: exact match", "LoRA - full (paired)"] == "-5.0 [-7.9, -2.1]"
    assert table.loc["Test: questions", "LoRA"] == "1,000"
    assert table.loc["Epochs", "LoRA - full (paired)"] == ""


def test_verdict_says_whether_the_interval_excludes_zero():
    assert verdict([-5.1, 0.6]) == "within noise (the interval includes 0)"
    assert verdict([0.2, 3.0]) == "LoRA better (the interval excludes 0)"
    assert verdict([-7.9, -2.1]) == "full fine-tuning better (the interval excludes 0)"


def test_report_states_each_conclusion_and_the_heldout_source():
    data = {"source": "rajpurkar/squad", "candidates": 10570, "dropped_seen_article": 0,
            "dropped_seen_paragraph_only": 0, "heldout_examples": 1000, "heldout_articles": 6}
    report = render(EVALUATIONS, COMPARISONS, data, 0.95)
    assert "95% bootstrap intervals" in report
    assert ("- Test exact match, LoRA - full fine-tuning on the same 1,000 questions: -2.2 [-5.1, +0.6]: "
            "within noise (the interval includes 0).") in report
    assert "- Held-out F1, LoRA - full fine-tuning on the same 1,000 questions: -4.5 [-7.0, -2.0]: full " \
           "fine-tuning better" in report
    assert ("- Test F1, LoRA - full fine-tuning on the same 1,000 questions: -2.0 [-4.6, +0.5]: "
            "within noise (the interval includes 0).") in report
    assert ("- Held-out exact match, LoRA - full fine-tuning on the same 1,000 questions: -5.0 [-7.9, -2.1]: "
            "full fine-tuning better (the interval excludes 0).") in report
    assert "1,000 questions from 6 articles of `rajpurkar/squad`" in report


def test_loss_plot_is_a_png(tmp_path):
    logs = {}
    for name, text in (("full", "timestamp\tstep\tloss\n0\t1\t5.9\n0\t10\t4.1\n"), ("lora", "timestamp\tstep\tloss\n0\t1\t5.9\n")):
        logs[name] = tmp_path / f"{name}.tsv"
        logs[name].write_text(text)
    plot_losses(logs, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


HEAD = {("test", "head"): evaluation("head", "test", 12.1, 18.6, 0.984, epochs=10, trainable_params=1538,
                                     train_runtime_s=139.0, peak_memory_mb=1024.0, initial_loss=3.7),
        ("heldout", "head"): evaluation("head", "heldout", 9.0, 15.0, 0.0)}


def test_the_reference_experiments_rows_stand_beside_this_runs_for_every_model():
    """Its published figures (distilbert-base-uncased on an RTX 3080 Ti) next to this run's; its "LoRA"
    row is the head-only column; DistilBERT's costs on this machine come from a benchmark JSON."""
    from squad_ft.report import reference_table

    benchmark = {"variants": {"full-fp16": {"reference_epoch_s": 100.0, "peak_memory_mb": 3000.0},
                              "head-fp16": {"reference_epoch_s": 20.0, "peak_memory_mb": 900.0}}}
    table = reference_table({**EVALUATIONS, **HEAD}, benchmark)
    assert list(table.columns) == ["Full fine-tuning: reference", "Full fine-tuning: this run", "LoRA: this run",
                                   'Head only (its "LoRA"): reference', "Head only: this run"]
    assert table["Full fine-tuning: reference"].to_dict() == {
        "Epochs": "3", "Trained params": "66,364,418", "Time to train": "3m49s", "Memory while training": "4.6 GB",
        "Time to train, DistilBERT here, 4,000 questions": "", "Memory while training, DistilBERT here": "",
        "Initial loss": "2.29", "Test: exact match": "50.2", "Test: F1": "63.0"}
    assert table.loc["Trained params", 'Head only (its "LoRA"): reference'] == "1,538"
    assert table.loc["Test: F1", 'Head only (its "LoRA"): reference'] == "18.6"
    assert table.loc["Test: F1", "Head only: this run"] == "18.6" and table.loc["Epochs", "Head only: this run"] == "10"
    # the benchmark's seconds per reference epoch times this run's epochs, in its precision
    assert table.loc["Time to train, DistilBERT here, 4,000 questions", "Full fine-tuning: this run"] == "5m00s"
    assert table.loc["Time to train, DistilBERT here, 4,000 questions", "Head only: this run"] == "3m20s"
    assert table.loc["Memory while training, DistilBERT here", "Head only: this run"] == "900 MB"
    assert table.loc["Time to train, DistilBERT here, 4,000 questions", "LoRA: this run"] == ""  # not measured
    assert "Time to train, DistilBERT here, 4,000 questions" not in reference_table({**EVALUATIONS, **HEAD}, None).index
