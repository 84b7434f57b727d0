"""Stage heldout: evaluation examples from articles the training data never saw.

Every example of heldout.source whose article title or paragraph occurs in the training
split is dropped (and counted); the first heldout.n_examples of the rest are kept.
"""
import datasets

from squad_ft.data import first_examples, load_jsonl, read_examples, save_jsonl, unseen_examples
from squad_ft.errors import UserError
from squad_ft.params import load_params
from squad_ft.stage import atomic_output, run_stage, stage_arguments, write_json


def main() -> None:
    paths = stage_arguments(__doc__.splitlines()[0], "train", "out", "counts")
    params = load_params()["heldout"]
    source = str(params["source"])
    unseen, counts = unseen_examples(read_examples(source, "heldout", str(params["split"])), load_jsonl(paths.train))
    if not unseen:
        raise UserError(f"heldout.source {source!r}: all {counts['candidates']} examples come from articles or "
                        "paragraphs of the training data; choose a source with other articles")
    examples: datasets.Dataset = first_examples(unseen, params["n_examples"], "heldout", source)
    summary = {"eval_set": "heldout", "source": source, **counts, "heldout_examples": len(examples),
               "heldout_articles": len(set(examples["title"]))}
    with atomic_output(paths.out) as out:
        save_jsonl(examples, out)
    with atomic_output(paths.counts) as out:
        write_json(out, summary)
    print(f"{len(examples)} held-out examples from {summary['heldout_articles']} unseen articles of {source} "
          f"({counts['dropped_seen_article'] + counts['dropped_seen_paragraph_only']} of {counts['candidates']} "
          f"dropped as seen in training) -> {paths.out}")


if __name__ == "__main__":
    run_stage(main)
