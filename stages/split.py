"""Stage split: a seeded, deterministic train/test split of the subset."""
from squad_ft.data import load_jsonl, save_jsonl, split_examples
from squad_ft.params import load_params
from squad_ft.stage import atomic_output, run_stage, stage_arguments


def main() -> None:
    paths = stage_arguments(__doc__, "subset", "train", "test")
    params = load_params()["data"]
    splits = split_examples(load_jsonl(paths.subset), params["test_size"], params["seed"])
    with atomic_output(paths.train) as train, atomic_output(paths.test) as test:  # both, or neither
        save_jsonl(splits["train"], train)
        save_jsonl(splits["test"], test)
    print(f"train {len(splits['train'])} -> {paths.train} / test {len(splits['test'])} -> {paths.test}")


if __name__ == "__main__":
    run_stage(main)
