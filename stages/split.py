"""Stage split: a seeded, deterministic train/test split of the subset."""
from squad_ft.data import load_jsonl, save_jsonl, split_examples
from squad_ft.stage import atomic_output, load_params, run_stage

SUBSET = "data/subset.jsonl"
OUT = "data/split"


def main() -> None:
    params = load_params()["data"]
    splits = split_examples(load_jsonl(SUBSET), params["test_size"], params["seed"])
    with atomic_output(OUT) as out:
        out.mkdir()
        for name, examples in splits.items():
            save_jsonl(examples, out / f"{name}.jsonl")
    print(f"train {len(splits['train'])} / test {len(splits['test'])} examples -> {OUT}")


if __name__ == "__main__":
    run_stage(main)
