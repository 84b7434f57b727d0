"""Stage split: a seeded, deterministic train/test split of the subset."""
from squad_ft.data import load_jsonl, save_jsonl, split_examples
from squad_ft.params import load_params
from squad_ft.stage import atomic_output, run_stage, stage_arguments


def main() -> None:
    paths = stage_arguments(__doc__, "subset", "train", "test")
    params = load_params()["data"]
    splits = split_examples(load_jsonl(paths.subset), params["test_size"], params["seed"])
    for name in ("train", "test"):
        with atomic_output(getattr(paths, name)) as out:
            save_jsonl(splits[name], out)
    print(f"train {len(splits['train'])} -> {paths.train} / test {len(splits['test'])} -> {paths.test}")


if __name__ == "__main__":
    run_stage(main)
