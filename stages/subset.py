"""Stage subset: the first data.n_examples of data.source (all for `all` or null), validated, as flat JSON Lines."""
from squad_ft.data import save_jsonl, stream_examples
from squad_ft.params import load_params
from squad_ft.stage import atomic_output, run_stage, stage_arguments


def main() -> None:
    paths = stage_arguments(__doc__, "out")
    params = load_params()["data"]
    with atomic_output(paths.out) as out:
        examples = stream_examples(str(params["source"]), params["n_examples"], revision=params["revision"])
        count = save_jsonl(examples, out)
    print(f"{count} examples from {params['source']} -> {paths.out}")


if __name__ == "__main__":
    run_stage(main)
