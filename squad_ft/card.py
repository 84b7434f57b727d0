"""Hugging Face model cards for the trained model folders, from this run's params and metrics."""
from __future__ import annotations

import yaml

from squad_ft.hub import looks_local
from squad_ft.inputs import describe
from squad_ft.stats import interval_of

TITLES = {"full": "full fine-tuning", "lora": "LoRA adapter", "lora-merged": "LoRA, merged into the base model",
          "head": "frozen encoder, QA head trained alone"}


def _hub_id(name: str) -> str | None:
    """`name` if it is a Hub id (a local path is no use to the Hub's metadata)."""
    return None if looks_local(name) else name


def _results(name: str, params: dict, evaluations: dict[str, dict]) -> list[dict]:
    results = []
    for eval_set, metrics in evaluations.items():
        source = params["data"]["source"] if eval_set == "test" else params["heldout"]["source"]
        dataset = {"name": f"SQuAD v1.1 ({eval_set}: {metrics[f'{eval_set}_examples']} questions)",
                   "type": _hub_id(source) or "squad"}
        results.append({
            "task": {"type": "question-answering", "name": "Extractive question answering"},
            "dataset": dataset,
            "metrics": [{"type": key, "value": metrics[key], "name": f"{label} ({eval_set})"}
                        for key, label in (("exact_match", "Exact match"), ("f1", "F1"))],
        })
    return [{"name": name, "results": results}]


def model_card(variant: str, params: dict, evaluations: dict[str, dict]) -> str:
    """README.md for a model folder: metadata, how it was trained, its scores, how to use and publish it.

    `variant` is full, lora, lora-merged or head; `evaluations` maps an evaluation set to its record
    merged with the model's training record (`squad_ft.stage.read_record`).
    """
    mode = "lora" if variant.startswith("lora") else variant
    base = str(params["model"]["name"])
    training = {**params["train"], **params[mode]}
    first = next(iter(evaluations.values()))
    metadata = {
        "library_name": "peft" if variant == "lora" else "transformers",
        "pipeline_tag": "question-answering",
        "tags": ["question-answering", "squad", "squad-ft"] + {"lora": ["lora"], "head": ["linear-probe"]}.get(mode, []),
        "metrics": ["exact_match", "f1"],
        "model-index": _results(f"squad-ft-{variant}", params, evaluations),
    }
    if _hub_id(base):
        metadata["base_model"] = base
    if _hub_id(str(params["data"]["source"])):
        metadata["datasets"] = [params["data"]["source"]]
    rows = "\n".join(
        f"| {eval_set} | {m[f'{eval_set}_examples']:,} | {m['exact_match']:.1f} {interval_of(m, 'exact_match')} | "
        f"{m['f1']:.1f} {interval_of(m, 'f1')} |" for eval_set, m in evaluations.items()
    )
    settings = "\n".join(f"| {key} | {value} |" for key, value in training.items())
    peft_note = {
        "lora": "\nThis folder holds the adapter only; loading it needs `peft` and the base model it records "
                f"(`{base}`). `models/lora-merged` is the same model merged into a plain `transformers` folder.\n",
        "head": f"\nThe encoder's weights are `{base}`'s, unchanged: only the span-prediction head was trained (a "
                "linear probe, the reference experiment's \"LoRA\" configuration).\n",
    }.get(variant, "")
    return f"""---
{yaml.safe_dump(metadata, sort_keys=False).strip()}
---

# {base}, fine-tuned on SQuAD v1.1 ({TITLES[variant]})

Extractive question answering: given a question and a context, the model points at the span of
the context that answers it. Trained by the squad-ft DVC pipeline from the pre-trained encoder `{base}` with a new span-prediction head, on the first
{params['data']['n_examples']} examples of `{params['data']['source']}`
({first['train_features']:,} training windows of {params['model']['max_length']} tokens,
stride {params['model']['doc_stride']}), on {first['device']}.
{peft_note}
## Scores

Official SQuAD v1.1 exact match and F1, with {params['bootstrap']['confidence']:.0%} bootstrap intervals over questions. The test
split shares its paragraphs with the training data; the held-out questions come from articles
the training data never saw.

| evaluation set | questions | exact match | F1 |
|---|---:|---|---|
{rows}

## Training

{first['trainable_params']:,} of {first['total_params']:,} parameters trained, in
{first['train_runtime_s']:.0f} s; training loss {first['initial_loss']:.2f} -> {first['final_loss']:.2f}.
Pre-trained encoder: {describe(first['inputs']['model'])}. Training data: {describe(first['inputs']['data'])}.

| setting | value |
|---|---|
{settings}

## Use

```bash
python -m squad_ft.predict --model PATH_TO_THIS_FOLDER --question "..." --context "..."
```

## Publish

```python
from huggingface_hub import HfApi
HfApi().upload_folder(folder_path="PATH_TO_THIS_FOLDER", repo_id="your-name/your-model", repo_type="model")
```
"""
