"""Stage tokenize: training features with labels and evaluation features with offsets."""
import datasets

from squad_ft.data import load_jsonl
from squad_ft.features import tokenize_splits
from squad_ft.modeling import load_tokenizer
from squad_ft.stage import atomic_output, load_params, run_stage

SPLIT = "data/split"
OUT = "data/features"


def main() -> None:
    params = load_params()["model"]
    splits = datasets.DatasetDict({name: load_jsonl(f"{SPLIT}/{name}.jsonl") for name in ("train", "test")})
    tokenizer = load_tokenizer(str(params["name"]))
    features = tokenize_splits(splits, tokenizer, params["max_length"], params["doc_stride"])
    with atomic_output(OUT) as out:
        features.save_to_disk(str(out))
    print(f"train {len(features['train'])} / test {len(features['test'])} features -> {OUT}")


if __name__ == "__main__":
    run_stage(main)
