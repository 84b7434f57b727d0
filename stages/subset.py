"""Stage subset: the first data.n_examples of data.source, validated, as flat JSON Lines."""
from squad_ft.data import load_examples, save_jsonl
from squad_ft.params import load_params
from squad_ft.stage import atomic_output, run_stage, stage_arguments


def main() -> None:
    paths = stage_arguments(__doc__, "out")
    params = load_params()["data"]
    examples = load_examples(str(params["source"]), params["n_examples"])
    with atomic_output(paths.out) as out:
        save_jsonl(examples, out)
    print(f"{len(examples)} examples from {params['source']} -> {paths.out}")


if __name__ == "__main__":
    run_stage(main)
