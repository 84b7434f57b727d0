"""Load SQuAD v1.1 examples from the Hub or a local file, validate them, split them.

Every source is turned into the flat Hugging Face schema used by `rajpurkar/squad`:
`{"id", "title", "context", "question", "answers": {"text": [...], "answer_start": [...]}}`.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

import datasets
import pyarrow
import pyarrow.parquet

from squad_ft.errors import UserError, first_line
from squad_ft.hub import check_local, hub_reachable, unreachable_note

FIELDS = ("id", "title", "context", "question", "answers")
LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet")


def stream_examples(
    source: str, n_examples: int | None, section: str = "data", split: str = "train", revision: str | None = None
) -> Iterator[dict]:
    """The first `n_examples` (None: all) of `source`, in order, validated, in the flat schema, one at a time.

    `source` is a Hub dataset id (its `split` at `revision`) or a local file; `section` is the params.yaml
    section the settings come from, named in every error. Nothing beyond the examples used is
    read from a Hub dataset or a JSON Lines / Parquet file, and none is held in memory.
    """
    count = 0
    for count, example in enumerate(islice(validated(_records(source, section, split, revision), section), n_examples), 1):
        yield example
    if n_examples is not None and count < n_examples:
        raise UserError(f"{section}.n_examples is {n_examples} but {_label(section)} {source!r} has only {count} examples")


def load_examples(
    source: str, n_examples: int | None, section: str = "data", split: str = "train", revision: str | None = None
) -> datasets.Dataset:
    """`stream_examples` as a Dataset."""
    return datasets.Dataset.from_list(list(stream_examples(source, n_examples, section, split, revision)))


def read_questions(source: str, option: str = "--input") -> datasets.Dataset:
    """Every example of a local file, for answering: answers optional (checked where present)."""
    return datasets.Dataset.from_list(list(validated(_records(source, option), option, answers_required=False)))


def _label(section: str) -> str:
    """How errors name the source: the parameter (`data.source`), or a command-line option as given."""
    return section if section.startswith("--") else f"{section}.source"


def _records(source: str, section: str, split: str = "train", revision: str | None = None) -> Iterator:
    if _is_local(source, section):
        return _read_local(Path(source), section)
    return _read_hub(source, section, split, revision)


def validated(records: Iterable, section: str, answers_required: bool = True) -> Iterator[dict]:
    """The records in the flat schema, each validated as it comes, their ids unique."""
    records, first_seen = iter(records), {}
    for index, record in enumerate(records):
        if not answers_required and isinstance(record, dict):
            record = {"title": "", "answers": {"text": [], "answer_start": []}, **record}
        validate_example(record, index, section, answers_required)
        if record["id"] in first_seen:
            positions = [first_seen[record["id"]], index] + [
                later for later, other in enumerate(records, index + 1)
                if isinstance(other, dict) and other.get("id") == record["id"]
            ]
            raise UserError(
                f"{_label(section)}: duplicate question id {record['id']!r} at examples "
                f"{', '.join(map(str, positions))}: predictions and scores are keyed by id, so ids must be unique"
            )
        first_seen[record["id"]] = index
        yield {field: record[field] for field in FIELDS}


def _is_local(source: str, section: str) -> bool:
    """A local file; anything else (a Hub id, or a local dataset folder) goes to `load_dataset`."""
    path = Path(source)
    if path.suffix in LOCAL_SUFFIXES and not path.exists():
        raise UserError(f"{_label(section)}: no such file: {source}")
    check_local(source, _label(section))
    if path.is_file() and path.suffix not in LOCAL_SUFFIXES:
        raise UserError(f"{_label(section)}: {source} is not a {', '.join(LOCAL_SUFFIXES)} file")
    return path.is_file()


def _read_hub(dataset_id: str, section: str, split: str, revision: str | None) -> Iterator[dict]:
    hub_reachable()  # if the Hub does not answer, read the cache only: no half-minute of retries
    try:
        # Arrow, memory-mapped: rows are read as used
        dataset = datasets.load_dataset(dataset_id, split=split, revision=revision)
    except Exception as err:  # the Hub client raises many types; all mean "not reachable here"
        reason = first_line(err)
        label = _label(section)
        raise UserError(
            f"{label}: cannot load the split {split!r} of the Hugging Face dataset {dataset_id!r} at revision "
            f"{revision or 'main'} (not reachable, "
            f"not cached or not a dataset: {reason}).{unreachable_note()} Set {label} to a local SQuAD file "
            f"instead: nested SQuAD v1.1 JSON, JSON Lines or Parquet, e.g. `dvc exp run -S {label}=path/to/file.json`"
        ) from err
    return iter(dataset)


def _read_local(path: Path, section: str) -> Iterator:
    if path.suffix == ".parquet":
        return _read_parquet(path, section)
    if path.suffix == ".jsonl":
        return _read_json_lines(path, section)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))  # one JSON document: read whole
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{_label(section)}: cannot read {path}: {err}") from err
    except json.JSONDecodeError as err:
        raise UserError(f"{_label(section)}: {path} is not valid JSON: {err}") from err
    if isinstance(content, dict) and "data" in content:
        return flatten_nested_squad(content, path, section)
    if isinstance(content, list):
        return iter(content)
    raise UserError(f"{_label(section)}: {path} is neither nested SQuAD JSON (with 'data') nor a list of examples")


def _read_parquet(path: Path, section: str) -> Iterator[dict]:
    try:
        batches = pyarrow.parquet.ParquetFile(path).iter_batches(batch_size=1000)
        for batch in batches:
            yield from batch.to_pylist()
    except pyarrow.ArrowException as err:
        raise UserError(f"{_label(section)}: {path} is not a readable Parquet file: {err}") from err


def _read_json_lines(path: Path, section: str = "data") -> Iterator:
    try:
        with path.open(encoding="utf-8") as lines:
            for line_number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise UserError(f"{_label(section)}: {path} line {line_number} is not valid JSON: {err}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{_label(section)}: cannot read {path}: {err}") from err


def flatten_nested_squad(content: dict, path: Path | str = "<data>", section: str = "data") -> Iterator[dict]:
    """Flatten nested SQuAD v1.1 JSON (article, paragraph, question order) into flat records."""
    where = "data"
    try:
        for a, article in enumerate(content["data"]):
            where = f"data[{a}]"
            for p, paragraph in enumerate(article["paragraphs"]):
                where = f"data[{a}].paragraphs[{p}]"
                for q, qa in enumerate(paragraph["qas"]):
                    where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                    answers = qa.get("answers", [])  # required for training; checked there
                    yield {
                        "id": qa["id"],
                        "title": article["title"],
                        "context": paragraph["context"],
                        "question": qa["question"],
                        "answers": {
                            "text": [answer["text"] for answer in answers],
                            "answer_start": [answer["answer_start"] for answer in answers],
                        },
                    }
    except KeyError as err:
        raise UserError(f"{_label(section)}: {path}: {where} is missing the field {err}") from err
    except TypeError as err:
        raise UserError(f"{_label(section)}: {path}: {where} is malformed: {err}") from err


def validate_example(record: object, index: int, section: str = "data", answers_required: bool = True) -> None:
    """Raise a UserError unless `record` is a flat SQuAD example whose answers match its context."""
    if not isinstance(record, dict):
        raise UserError(f"{_label(section)}: example {index} is not a JSON object")
    label = f"{_label(section)}: example {index} (id {record.get('id')!r})"
    missing = [field for field in FIELDS if field not in record]
    if missing:
        raise UserError(f"{label} is missing the field(s) {', '.join(missing)}")
    for field in ("id", "title", "context", "question"):
        if not isinstance(record[field], str):
            raise UserError(f"{label}: {field} must be a string")
        if field != "title" and not record[field].strip():
            raise UserError(f"{label}: {field} is empty")
    answers = record["answers"]
    if not isinstance(answers, dict) or not {"text", "answer_start"} <= answers.keys():
        raise UserError(f"{label}: answers must have 'text' and 'answer_start'")
    texts, starts = list(answers["text"]), list(answers["answer_start"])
    if (answers_required and not texts) or len(texts) != len(starts) or not all(isinstance(t, str) for t in texts):
        raise UserError(f"{label}: answers needs as many answer_start as text strings, and at least one")
    if not all(text.strip() for text in texts):
        raise UserError(f"{label}: an answer text is empty")
    context = record["context"]
    for text, start in zip(texts, starts):
        if not isinstance(start, int) or isinstance(start, bool):
            raise UserError(f"{label}: answer_start must be an integer (a character offset), got {start!r}")
        found = context[start:start + len(text)] if start >= 0 else None
        if found != text:
            raise UserError(
                f"{label}: answer {text!r} does not match the context at answer_start {start} (found {found!r})"
            )


def _seen(train: datasets.Dataset) -> tuple[set[str], set[str]]:
    """The article titles and the paragraphs of the training split."""
    return set(train["title"]), set(train["context"])


def unseen_examples(candidates: Iterable[dict], train: datasets.Dataset, counts: dict) -> Iterator[dict]:
    """The candidates whose article (title) and paragraph (context) never occur in `train`, in order.

    `counts` is filled as the candidates go by: how many were seen, and dropped for what reason.
    """
    titles, contexts = _seen(train)
    counts.update(candidates=0, dropped_seen_article=0, dropped_seen_paragraph_only=0, unseen=0)
    for example in candidates:
        counts["candidates"] += 1
        if example["title"] in titles:
            counts["dropped_seen_article"] += 1
        elif example["context"] in contexts:
            counts["dropped_seen_paragraph_only"] += 1
        else:
            counts["unseen"] += 1
            yield example


def validation_first(unseen: Iterable[dict], n_validation: int) -> Iterator[tuple[str, dict]]:
    """("validation" or "heldout", example) for each of `unseen`, in order: the first articles (titles) to
    appear go to validation, whole, until it holds at least `n_validation` questions; every later article
    goes to held-out. No article is in both, so choosing on validation says nothing about held-out.

    One pass: an article is validation's if its first question came while validation still had fewer than
    `n_validation`; SQuAD's articles are contiguous, so validation ends at the first article boundary at or
    after `n_validation` questions.
    """
    titles, count = set(), 0
    for example in unseen:
        if example["title"] not in titles and count < n_validation:
            titles.add(example["title"])
        if example["title"] in titles:
            count += 1
            yield "validation", example
        else:
            yield "heldout", example


def overlap_with(examples: datasets.Dataset, train: datasets.Dataset) -> dict[str, float]:
    """Fractions of `examples` whose paragraph, and whose article, also occur in `train`."""
    titles, contexts = _seen(train)
    n = len(examples)
    return {
        "paragraph_overlap": round(sum(c in contexts for c in examples["context"]) / n, 4),
        "article_overlap": round(sum(t in titles for t in examples["title"]) / n, 4),
    }


def split_examples(examples: datasets.Dataset, test_size: float, seed: int) -> datasets.DatasetDict:
    """Shuffle with `seed` and split into train and test; the same inputs give the same split."""
    n_test = round(len(examples) * test_size)
    if not 0 < n_test < len(examples):
        raise UserError(
            f"data.test_size {test_size} of {len(examples)} examples leaves an empty train or test split"
        )
    return examples.train_test_split(test_size=n_test, seed=seed, shuffle=True)


def save_jsonl(examples: Iterable[dict], path: Path) -> int:
    """Write examples as JSON Lines in the flat schema (readable by people and by `load_jsonl`),
    one at a time; return how many."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for count, record in enumerate(examples, 1):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return count


def load_jsonl(path: str | Path) -> datasets.Dataset:
    """Read examples written by `save_jsonl` into Arrow (memory-mapped, not Python objects)."""
    return datasets.Dataset.from_json(str(path))
