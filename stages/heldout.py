"""Stage heldout: the validation and held-out sets, from articles the training data never saw.

Every example of heldout.source whose article title or paragraph occurs in the training
split is dropped (and counted). Of the rest, the first articles, whole, become the validation set
(at least validation.n_examples questions), which training scores every epoch and tuning chooses
by; the first heldout.n_examples of the later articles become the held-out set, scored once.
"""
import json

from squad_ft.data import load_jsonl, stream_examples, unseen_examples, validation_first
from squad_ft.errors import UserError
from squad_ft.inputs import read_fingerprint
from squad_ft.params import load_params
from squad_ft.stage import atomic_output, run_stage, stage_arguments, write_json


def main() -> None:
    paths = stage_arguments(__doc__.splitlines()[0], "train", "input", "validation", "out", "counts")
    all_params = load_params()
    params, n_validation = all_params["heldout"], all_params["validation"]["n_examples"]
    source, wanted = str(params["source"]), params["n_examples"]
    counts = {}
    written = {"validation": 0, "heldout": 0}
    titles = {"validation": set(), "heldout": set()}
    with atomic_output(paths.validation) as validation_out, atomic_output(paths.out) as heldout_out, \
            atomic_output(paths.counts) as counts_out:  # entered first: a failure leaves none of the three
        candidates = stream_examples(source, None, "heldout", str(params["split"]), params["revision"])
        unseen = unseen_examples(candidates, load_jsonl(paths.train), counts)
        with validation_out.open("w", encoding="utf-8") as validation, heldout_out.open("w", encoding="utf-8") as heldout:
            files = {"validation": validation, "heldout": heldout}
            for eval_set, example in validation_first(unseen, n_validation):
                if eval_set == "heldout" and wanted is not None and written["heldout"] >= wanted:
                    continue  # the rest is still validated and counted
                files[eval_set].write(json.dumps(example, ensure_ascii=False) + "\n")
                written[eval_set] += 1
                titles[eval_set].add(example["title"])
        if not counts["unseen"]:
            raise UserError(f"heldout.source {source!r}: all {counts['candidates']} examples come from articles or "
                            "paragraphs of the training data; choose a source with other articles")
        if written["validation"] < n_validation:
            raise UserError(f"validation.n_examples is {n_validation} but heldout.source {source!r} has only "
                            f"{written['validation']} examples not seen in training; lower it")
        if not written["heldout"]:
            raise UserError(f"heldout.source {source!r}: no examples left for the held-out set after the training "
                            f"data's articles ({counts['candidates'] - counts['unseen']} of {counts['candidates']}) and "
                            f"validation's {written['validation']}; choose a source with other articles or lower "
                            "validation.n_examples")
        if wanted is not None and written["heldout"] < wanted:
            raise UserError(f"heldout.n_examples is {wanted} but heldout.source {source!r} has only "
                            f"{written['heldout']} examples not seen in training or validation")
        write_json(counts_out, {
            "eval_set": "heldout", "source": source, "input": read_fingerprint(paths.input), **counts,
            "validation_examples": written["validation"], "validation_articles": len(titles["validation"]),
            "heldout_examples": written["heldout"], "heldout_articles": len(titles["heldout"])})
    print(f"{written['validation']} validation examples from {len(titles['validation'])} and {written['heldout']} "
          f"held-out examples from {len(titles['heldout'])} unseen articles of {source} "
          f"({counts['dropped_seen_article'] + counts['dropped_seen_paragraph_only']} of {counts['candidates']} "
          f"dropped as seen in training) -> {paths.validation}, {paths.out}")


if __name__ == "__main__":
    run_stage(main)
