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
    shutil.copytree(ROOT / "benchmarks", project / "benchmarks")
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
    bf16 = {"full-bf16", "lora-bf16", "eval-bf16"}
    native = cpu_has_native_bf16() or torch.cuda.is_available()
    assert set(variants) == {"full", "lora", "full-pad384", "lora-pad384", "full-checkpointing",
                             "lora-checkpointing", "eval", "eval-pad384", *(bf16 if native else ())}
    assert set(report["skipped"]) == (set() if native else bf16)  # emulated bf16 is not measured, and says so
    assert all(variants[name]["device"].endswith(", fp32)") for name in variants if name not in bf16)
    full, lora = variants["full"], variants["lora"]
    training = {name: figures for name, figures in variants.items() if not name.startswith("eval")}
    assert {figures["steps"] for figures in training.values()} == {math.ceil(full["features"] / 8)}  # the same batches
    assert lora["trainable_params"] < full["trainable_params"]
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
