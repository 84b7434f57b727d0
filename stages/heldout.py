"""Stage heldout: evaluation examples from articles the training data never saw.

Every example of heldout.source whose article title or paragraph occurs in the training
split is dropped (and counted); the first heldout.n_examples of the rest are kept.
"""
from itertools import islice

from squad_ft.data import load_jsonl, save_jsonl, stream_examples, unseen_examples
from squad_ft.errors import UserError
from squad_ft.inputs import read_fingerprint
from squad_ft.params import load_params
from squad_ft.stage import atomic_output, run_stage, stage_arguments, write_json


def main() -> None:
    paths = stage_arguments(__doc__.splitlines()[0], "train", "input", "out", "counts")
    params = load_params()["heldout"]
    source, wanted = str(params["source"]), params["n_examples"]
    counts = {}
    candidates = stream_examples(source, None, "heldout", str(params["split"]), params["revision"])
    unseen = unseen_examples(candidates, load_jsonl(paths.train), counts)
    with atomic_output(paths.out) as out:
        written = save_jsonl(islice(unseen, wanted), out)
        for _ in unseen:  # the rest is still validated and counted
            pass
        if not written:
            raise UserError(f"heldout.source {source!r}: all {counts['candidates']} examples come from articles or "
                            "paragraphs of the training data; choose a source with other articles")
        if wanted is not None and written < wanted:
            raise UserError(f"heldout.n_examples is {wanted} but heldout.source {source!r} has only {written} "
                            "examples not seen in training")
    titles = set(load_jsonl(paths.out)["title"])
    summary = {"eval_set": "heldout", "source": source, "input": read_fingerprint(paths.input), **counts, "heldout_examples": written,
               "heldout_articles": len(titles)}
    with atomic_output(paths.counts) as out:
        write_json(out, summary)
    print(f"{written} held-out examples from {len(titles)} unseen articles of {source} "
          f"({counts['dropped_seen_article'] + counts['dropped_seen_paragraph_only']} of {counts['candidates']} "
          f"dropped as seen in training) -> {paths.out}")


if __name__ == "__main__":
    run_stage(main)
