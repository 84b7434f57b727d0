"""Stage tokenize: training features (windows with start/end labels) for the train split."""
from squad_ft.data import load_jsonl
from squad_ft.features import count_long_questions, tokenize
from squad_ft.modeling import load_tokenizer
from squad_ft.params import load_params
from squad_ft.stage import atomic_output, run_stage, stage_arguments


def main() -> None:
    paths = stage_arguments(__doc__, "train", "out")
    params = load_params()["model"]
    tokenizer = load_tokenizer(str(params["name"]), params["revision"])
    examples = load_jsonl(paths.train)
    features = tokenize(examples, tokenizer, params, training=True)
    long_questions = count_long_questions(examples, tokenizer, params["max_question_length"])
    print(f"{long_questions} of {len(examples)} questions longer than model.max_question_length "
          f"({params['max_question_length']} tokens), cut to it")
    with atomic_output(paths.out) as out:
        features.save_to_disk(str(out))
    print(f"{len(features)} training features -> {paths.out}")


if __name__ == "__main__":
    run_stage(main)
