"""Load SQuAD v1.1 examples from the Hub or a local file, validate them, split them.

Every source is turned into the flat Hugging Face schema used by `rajpurkar/squad`:
`{"id", "title", "context", "question", "answers": {"text": [...], "answer_start": [...]}}`.
"""
from __future__ import annotations

import json
from pathlib import Path

import datasets

from squad_ft.errors import UserError
from squad_ft.hub import check_local, hub_reachable, unreachable_note

FIELDS = ("id", "title", "context", "question", "answers")
LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet")


def load_examples(source: str, n_examples: int | None, section: str = "data", split: str = "train") -> datasets.Dataset:
    """The first `n_examples` (None: all) of `source`, in order, validated, in the flat schema.

    `source` is a Hub dataset id (its `split`) or a local file; `section` is the params.yaml
    section the settings come from, named in every error.
    """
    return first_examples(_read(source, section, split), n_examples, section, source)


def read_examples(source: str, section: str = "data", split: str = "train") -> list[dict]:
    """Every example of `source`, validated, in the flat schema."""
    return _validated(_read(source, section, split), section)


def first_examples(records: list[dict], n_examples: int | None, section: str, source: str) -> datasets.Dataset:
    """The first `n_examples` of `records` (all of them for None), validated, as a Dataset."""
    if n_examples is not None:
        if not isinstance(n_examples, int) or isinstance(n_examples, bool) or n_examples <= 0:
            raise UserError(f"{section}.n_examples must be a positive integer or null (all), got {n_examples!r}")
        if n_examples > len(records):
            raise UserError(
                f"{section}.n_examples is {n_examples} but {_label(section)} {source!r} has only {len(records)} "
                "examples" + (" not seen in training" if section == "heldout" else "")
            )
        records = records[:n_examples]
    return datasets.Dataset.from_list(_validated(records, section))


def _label(section: str) -> str:
    """How errors name the source: the parameter (`data.source`), or a command-line option as given."""
    return section if section.startswith("--") else f"{section}.source"


def read_questions(source: str, option: str = "--input") -> datasets.Dataset:
    """Every example of a local file, for answering: answers optional (checked where present)."""
    return datasets.Dataset.from_list(_validated(_read(source, option, "train"), option, answers_required=False))


def _read(source: str, section: str, split: str) -> list[dict]:
    return _read_local(Path(source), section) if _is_local(source, section) else _read_hub(source, section, split)


def _validated(records: list, section: str, answers_required: bool = True) -> list[dict]:
    """The records in the flat schema, each validated, their ids unique."""
    positions = {}
    for index, record in enumerate(records):
        if not answers_required and isinstance(record, dict):
            record = {"title": "", "answers": {"text": [], "answer_start": []}, **record}
        validate_example(record, index, section, answers_required)
        records[index] = record
        positions.setdefault(record["id"], []).append(index)
    duplicated = next(((id_, where) for id_, where in positions.items() if len(where) > 1), None)
    if duplicated:
        raise UserError(
            f"{_label(section)}: duplicate question id {duplicated[0]!r} at examples "
            f"{', '.join(map(str, duplicated[1]))}: predictions and scores are keyed by id, so ids must be unique"
        )
    return [{field: record[field] for field in FIELDS} for record in records]


def _is_local(source: str, section: str) -> bool:
    """A local file; anything else (a Hub id, or a local dataset folder) goes to `load_dataset`."""
    path = Path(source)
    if path.suffix in LOCAL_SUFFIXES and not path.exists():
        raise UserError(f"{_label(section)}: no such file: {source}")
    check_local(source, _label(section))
    if path.is_file() and path.suffix not in LOCAL_SUFFIXES:
        raise UserError(f"{_label(section)}: {source} is not a {', '.join(LOCAL_SUFFIXES)} file")
    return path.is_file()


def _read_hub(dataset_id: str, section: str, split: str) -> list[dict]:
    hub_reachable()  # if the Hub does not answer, read the cache only: no half-minute of retries
    try:
        return datasets.load_dataset(dataset_id, split=split).to_list()
    except Exception as err:  # the Hub client raises many types; all mean "not reachable here"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        label = _label(section)
        raise UserError(
            f"{label}: cannot load the split {split!r} of the Hugging Face dataset {dataset_id!r} (not reachable, "
            f"not cached or not a dataset: {reason}).{unreachable_note()} Set {label} to a local SQuAD file "
            f"instead: nested SQuAD v1.1 JSON, JSON Lines or Parquet, e.g. `dvc exp run -S {label}=path/to/file.json`"
        ) from err


def _read_local(path: Path, section: str) -> list[dict]:
    if path.suffix == ".parquet":
        try:
            return datasets.Dataset.from_parquet(str(path)).to_list()
        except Exception as err:  # pyarrow raises several error types for unreadable files
            raise UserError(f"{_label(section)}: {path} is not a readable Parquet file: {err}") from err
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{_label(section)}: cannot read {path}: {err}") from err
    if path.suffix == ".json":
        try:
            content = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{_label(section)}: {path} is not valid JSON: {err}") from err
        if isinstance(content, dict) and "data" in content:
            return flatten_nested_squad(content, path, section)
        if isinstance(content, list):
            return content
        raise UserError(f"{_label(section)}: {path} is neither nested SQuAD JSON (with 'data') nor a list of examples")
    return _read_json_lines(text, path, section)


def _read_json_lines(text: str, path: Path, section: str = "data") -> list[dict]:
    records = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise UserError(f"{_label(section)}: {path} line {line_number} is not valid JSON: {err}") from err
    return records


def flatten_nested_squad(content: dict, path: Path | str = "<data>", section: str = "data") -> list[dict]:
    """Flatten nested SQuAD v1.1 JSON (article, paragraph, question order) into flat records."""
    records = []
    where = "data"
    try:
        for a, article in enumerate(content["data"]):
            where = f"data[{a}]"
            for p, paragraph in enumerate(article["paragraphs"]):
                where = f"data[{a}].paragraphs[{p}]"
                for q, qa in enumerate(paragraph["qas"]):
                    where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                    answers = qa.get("answers", [])  # required for training; checked there
                    records.append({
                        "id": qa["id"],
                        "title": article["title"],
                        "context": paragraph["context"],
                        "question": qa["question"],
                        "answers": {
                            "text": [answer["text"] for answer in answers],
                            "answer_start": [answer["answer_start"] for answer in answers],
                        },
                    })
    except KeyError as err:
        raise UserError(f"{_label(section)}: {path}: {where} is missing the field {err}") from err
    except TypeError as err:
        raise UserError(f"{_label(section)}: {path}: {where} is malformed: {err}") from err
    return records


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
        found = context[start:start + len(text)] if isinstance(start, int) and start >= 0 else None
        if found != text:
            raise UserError(
                f"{label}: answer {text!r} does not match the context at answer_start {start} (found {found!r})"
            )


def unseen_examples(candidates: list[dict], train: datasets.Dataset) -> tuple[list[dict], dict]:
    """The candidates whose article (title) and paragraph (context) never occur in `train`.

    Returns them, in order, with the counts of what was dropped for the record.
    """
    titles, contexts = set(train["title"]), set(train["context"])
    kept = [ex for ex in candidates if ex["title"] not in titles and ex["context"] not in contexts]
    counts = {
        "candidates": len(candidates),
        "dropped_seen_article": sum(ex["title"] in titles for ex in candidates),
        "dropped_seen_paragraph_only": sum(ex["title"] not in titles and ex["context"] in contexts for ex in candidates),
        "unseen": len(kept),
    }
    return kept, counts


def overlap_with(examples: datasets.Dataset, train: datasets.Dataset) -> dict[str, float]:
    """Fractions of `examples` whose paragraph, and whose article, also occur in `train`."""
    titles, contexts = set(train["title"]), set(train["context"])
    n = len(examples)
    return {
        "paragraph_overlap": round(sum(c in contexts for c in examples["context"]) / n, 4),
        "article_overlap": round(sum(t in titles for t in examples["title"]) / n, 4),
    }


def split_examples(examples: datasets.Dataset, test_size: float, seed: int) -> datasets.DatasetDict:
    """Shuffle with `seed` and split into train and test; the same inputs give the same split."""
    if not isinstance(test_size, (int, float)) or not 0 < test_size < 1:
        raise UserError(f"data.test_size must be a fraction strictly between 0 and 1, got {test_size!r}")
    n_test = round(len(examples) * test_size)
    if not 0 < n_test < len(examples):
        raise UserError(
            f"data.test_size {test_size} of {len(examples)} examples leaves an empty train or test split"
        )
    return examples.train_test_split(test_size=n_test, seed=seed, shuffle=True)


def save_jsonl(examples: datasets.Dataset, path: Path) -> None:
    """Write examples as JSON Lines in the flat schema (readable by people and by `load_jsonl`)."""
    with path.open("w", encoding="utf-8") as out:
        for record in examples:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def load_jsonl(path: str | Path) -> datasets.Dataset:
    """Read examples written by `save_jsonl`."""
    return datasets.Dataset.from_list(_read_json_lines(Path(path).read_text(encoding="utf-8"), Path(path)))
