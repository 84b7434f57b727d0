"""Stage split: a seeded, deterministic train/test split of the subset."""
from squad_ft.data import load_jsonl, save_jsonl, split_examples
from squad_ft.params import load_params
from squad_ft.stage import atomic_output, run_stage, stage_arguments


def main() -> None:
    paths = stage_arguments(__doc__, "subset", "out")
    params = load_params()["data"]
    splits = split_examples(load_jsonl(paths.subset), params["test_size"], params["seed"])
    with atomic_output(paths.out) as out:
        out.mkdir()
        for name, examples in splits.items():
            save_jsonl(examples, out / f"{name}.jsonl")
    print(f"train {len(splits['train'])} / test {len(splits['test'])} examples -> {paths.out}")


if __name__ == "__main__":
    run_stage(main)
