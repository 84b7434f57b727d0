"""The benchmark command, end to end on the tiny model: every variant runs, the ratios are its figures'."""
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from squad_ft.device import cpu_has_native_bf16

ROOT = Path(__file__).parents[1]


def test_benchmark_runs_every_variant_and_reports_their_ratios(project, tmp_path):
    shutil.copytree(ROOT / "benchmarks", project / "benchmarks", dirs_exist_ok=True)
    out = tmp_path / "bench.json"
    params = yaml.safe_load((project / "params.yaml").read_text())
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--model", params["model"]["name"], "--squad",
         params["data"]["source"], "--json", str(out), "--examples", "12", "--eval-examples", "8"],
        cwd=project, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    variants = report["variants"]
    bf16 = {"full-bf16", "lora-bf16", "head-bf16", "eval-bf16"}
    native = cpu_has_native_bf16() or torch.cuda.is_available()
    assert set(variants) == {"full", "lora", "head", "full-pad384", "lora-pad384", "full-checkpointing",
                             "lora-checkpointing", "eval", "eval-pad384", *(bf16 if native else ())}
    assert set(report["skipped"]) == (set() if native else bf16)  # emulated bf16 is not measured, and says so
    assert all(variants[name]["device"].endswith(", fp32)") for name in variants if name not in bf16)
    full, lora = variants["full"], variants["lora"]
    training = {name: figures for name, figures in variants.items() if not name.startswith("eval")}
    assert {figures["steps"] for figures in training.values()} == {math.ceil(full["features"] / 8)}  # the same batches
    assert lora["trainable_params"] < full["trainable_params"]
    head = variants["head"]
    assert head["trainable_params"] == 32 * 2 + 2  # the QA head of the tiny DistilBERT
    # a frozen encoder keeps nothing of its own for the backward pass: far less than LoRA, which backpropagates
    # through every layer
    assert 0 < head["saved_for_backward_mb"] < lora["saved_for_backward_mb"] / 4
    assert report["head_vs_lora_saved_for_backward"] == pytest.approx(
        head["saved_for_backward_mb"] / lora["saved_for_backward_mb"], abs=2e-3)
    per_step = not torch.cuda.is_available() and Path("/proc/self/status").exists()  # the CPU's, on Linux
    for figures in training.values():  # memory after every step: its peak so far never falls, ends at the run's
        assert len(figures["peak_mb_by_step"]) == len(figures["resident_mb_by_step"]) == figures["steps"] * per_step
        assert figures["peak_mb_by_step"] == sorted(figures["peak_mb_by_step"])
        assert figures["peak_mb_by_step"][-1] <= figures["peak_memory_mb"]
        assert all(now <= peak for now, peak in zip(figures["resident_mb_by_step"], figures["peak_mb_by_step"]))
    for figures in training.values():  # an epoch of 4,000 questions at the measured windows per question
        assert figures["reference_epoch_windows"] == round(4000 * figures["features"] / 12)
        assert figures["reference_epoch_s"] == pytest.approx(
            figures["mean_step_s"] * math.ceil(figures["reference_epoch_windows"] / 8), abs=0.1)
    assert report["cpu_cores"] > 0 and report["cpu_model"] in report["machine"] and report["architecture"] is None
    max_length = params["model"]["max_length"]
    assert variants["full-pad384"]["mean_tokens_per_feature"] == variants["lora-pad384"]["mean_tokens_per_feature"] == max_length
    assert full["mean_tokens_per_feature"] < max_length  # per-batch padding: the features' own lengths
    assert report["lora_vs_full_step_time"] == pytest.approx(lora["step_s"] / full["step_s"], abs=1e-3)
    assert report["lora_vs_full_peak_memory"] == pytest.approx(lora["peak_memory_mb"] / full["peak_memory_mb"],
                                                               abs=1e-3)
    speedups = {mode: variants[mode]["train_features_per_s"] / variants[f"{mode}-pad384"]["train_features_per_s"]
                for mode in ("full", "lora")}
    assert report["train_speedup_vs_pad384_by_mode"] == pytest.approx(speedups, abs=1e-3)
    assert report["train_speedup_vs_pad384"] == min(report["train_speedup_vs_pad384_by_mode"].values())
    for mode in ("full", "lora"):
        assert report["gradient_checkpointing_vs_without"][mode] == pytest.approx({
            "peak_memory": variants[f"{mode}-checkpointing"]["peak_memory_mb"] / variants[mode]["peak_memory_mb"],
            "step_time": variants[f"{mode}-checkpointing"]["step_s"] / variants[mode]["step_s"]}, abs=1e-3)
    assert report["eval_speedup_vs_pad384"] == pytest.approx(
        variants["eval"]["eval_features_per_s"] / variants["eval-pad384"]["eval_features_per_s"], abs=1e-3)
    assert variants["eval"]["features"] == variants["eval-pad384"]["features"] >= 8
    assert "lora_vs_full_step_time" in result.stdout  # the printed summary
    if native:
        for mode in ("full", "lora"):
            assert report["bf16_vs_fp32_train_throughput"][mode] == pytest.approx(
                variants[f"{mode}-bf16"]["train_features_per_s"] / variants[mode]["train_features_per_s"], abs=1e-3)
            assert report["bf16_vs_fp32_peak_memory"][mode] == pytest.approx(
                variants[f"{mode}-bf16"]["peak_memory_mb"] / variants[mode]["peak_memory_mb"], abs=1e-3)
        assert report["lora_vs_full_step_time_bf16"] == pytest.approx(
            variants["lora-bf16"]["step_s"] / variants["full-bf16"]["step_s"], abs=1e-3)
    else:
        assert "bf16_vs_fp32_train_throughput" not in report


def test_the_profile_splits_each_variants_step_into_operator_groups(project, tmp_path):
    from benchmarks.profile import GENERIC, SPECIFIC

    shutil.copytree(ROOT / "benchmarks", project / "benchmarks", dirs_exist_ok=True)
    out = tmp_path / "profile.json"
    params = yaml.safe_load((project / "params.yaml").read_text())
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.profile", "--model", params["model"]["name"], "--squad",
         params["data"]["source"], "--json", str(out), "--examples", "20", "--skip", "1", "--steps", "1",
         "--variants", "full", "lora"], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    groups = {group for group, _ in SPECIFIC + GENERIC} | {"other"}
    for variant in ("full", "lora"):
        figures = report["variants"][variant]
        assert set(figures["groups_s"]) <= groups and figures["groups_s"]["matrix products"] > 0
        assert all(operator["group"] in groups for operator in figures["top_operators"])
    assert report["variants"]["full"]["groups_s"]["attention"] > 0  # the fused attention kernel, by its own name
    assert "matrix products" in result.stdout


def test_the_distilbert_architecture_is_the_reference_experiments_model():
    """The shipped configuration is transformers' DistilBertConfig defaults (meant to be
    distilbert-base-uncased's); built with random weights it has the reference table's 66,364,418
    parameters, its head mode trains the 1,538 of the QA head, LoRA its adapters and the head."""
    from transformers import DistilBertConfig

    from benchmarks.run import ARCHITECTURES, random_model
    from squad_ft.modeling import for_mode, count_parameters
    from squad_ft.params import load_params
    from squad_ft.reference import PUBLISHED

    shipped = json.loads((ARCHITECTURES / "distilbert-base-uncased" / "config.json").read_text())
    defaults = DistilBertConfig().to_dict()
    # not architecture: which head was saved, the writing version, and tie_weights_, an old key transformers 5 no
    # longer reads (the masked-LM head's weight tying, which a QA model does not have)
    ignored = ("architectures", "transformers_version", "tie_weights_")
    architecture = {key: value for key, value in shipped.items() if key not in ignored}
    assert {key: defaults[key] for key in architecture} == architecture

    class Tokenizer:  # the stand-in's uncased WordPiece vocabulary has as many tokens
        def __len__(self):
            return 30522

    lora = load_params(ROOT / "params.yaml")["lora"]
    counts = {mode: count_parameters(for_mode(random_model("distilbert-base-uncased", Tokenizer()), mode, lora))
              for mode in ("full", "head", "lora")}
    assert counts["full"] == (PUBLISHED["full"]["trainable_params"],) * 2 == (66_364_418,) * 2
    assert counts["head"] == (PUBLISHED["head"]["trainable_params"], 66_364_418) == (1_538, 66_364_418)
    r, width, hidden, layers = lora["r"], 768, 3072, 6  # adapters on q, k, v, out (768 x 768), lin1 and lin2
    adapters = layers * (4 * r * (width + width) + 2 * r * (width + hidden))
    assert counts["lora"][0] == adapters + 1_538
