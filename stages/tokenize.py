"""Stage tokenize: training features (windows with start/end labels) for the train split."""
from squad_ft.data import load_jsonl
from squad_ft.features import tokenize
from squad_ft.modeling import load_tokenizer
from squad_ft.params import load_params
from squad_ft.stage import atomic_output, run_stage, stage_arguments


def main() -> None:
    paths = stage_arguments(__doc__, "train", "out")
    params = load_params()["model"]
    tokenizer = load_tokenizer(str(params["name"]))
    features = tokenize(load_jsonl(paths.train), tokenizer, params["max_length"], params["doc_stride"],
                        training=True, num_proc=params["num_proc"])
    with atomic_output(paths.out) as out:
        features.save_to_disk(str(out))
    print(f"{len(features)} training features -> {paths.out}")


if __name__ == "__main__":
    run_stage(main)
