"""Load SQuAD v1.1 examples from the Hub or a local file, validate them, split them.

Every source is turned into the flat Hugging Face schema used by `rajpurkar/squad`:
`{"id", "title", "context", "question", "answers": {"text": [...], "answer_start": [...]}}`.
"""
from __future__ import annotations

import json
from pathlib import Path

import datasets

from squad_ft.stage import UserError

FIELDS = ("id", "title", "context", "question", "answers")
LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet")


def load_examples(source: str, n_examples: int) -> datasets.Dataset:
    """The first `n_examples` of `source`, in order, validated, in the flat schema."""
    if not isinstance(n_examples, int) or n_examples <= 0:
        raise UserError(f"data.n_examples must be a positive integer, got {n_examples!r}")
    records = _read_local(Path(source)) if _is_local(source) else _read_hub(source)
    if n_examples > len(records):
        raise UserError(
            f"data.n_examples is {n_examples} but data.source {source!r} has only {len(records)} examples"
        )
    records = records[:n_examples]
    for index, record in enumerate(records):
        validate_example(record, index)
    return datasets.Dataset.from_list([{field: record[field] for field in FIELDS} for record in records])


def _is_local(source: str) -> bool:
    """A local file; anything else (a Hub id, or a local dataset folder) goes to `load_dataset`."""
    path = Path(source)
    if path.suffix in LOCAL_SUFFIXES and not path.exists():
        raise UserError(f"data.source: no such file: {source}")
    if path.is_file() and path.suffix not in LOCAL_SUFFIXES:
        raise UserError(f"data.source: {source} is not a {', '.join(LOCAL_SUFFIXES)} file")
    return path.is_file()


def _read_hub(dataset_id: str) -> list[dict]:
    try:
        return datasets.load_dataset(dataset_id, split="train").to_list()
    except Exception as err:  # the Hub client raises many types; all mean "not reachable here"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"data.source: cannot load the Hugging Face dataset {dataset_id!r} (not reachable, not cached or not a "
            f"dataset: "
            f"{reason}). Set data.source to a local SQuAD file instead: nested SQuAD v1.1 JSON, JSON Lines or "
            "Parquet, e.g. `dvc exp run -S data.source=path/to/train-v1.1.json`"
        ) from err


def _read_local(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        try:
            return datasets.Dataset.from_parquet(str(path)).to_list()
        except Exception as err:  # pyarrow raises several error types for unreadable files
            raise UserError(f"data.source: {path} is not a readable Parquet file: {err}") from err
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"data.source: cannot read {path}: {err}") from err
    if path.suffix == ".json":
        try:
            content = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"data.source: {path} is not valid JSON: {err}") from err
        if isinstance(content, dict) and "data" in content:
            return flatten_nested_squad(content, path)
        if isinstance(content, list):
            return content
        raise UserError(f"data.source: {path} is neither nested SQuAD JSON (with 'data') nor a list of examples")
    return _read_json_lines(text, path)


def _read_json_lines(text: str, path: Path) -> list[dict]:
    records = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise UserError(f"data.source: {path} line {line_number} is not valid JSON: {err}") from err
    return records


def flatten_nested_squad(content: dict, path: Path | str = "<data>") -> list[dict]:
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
                    answers = qa["answers"]
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
        raise UserError(f"data.source: {path}: {where} is missing the field {err}") from err
    except TypeError as err:
        raise UserError(f"data.source: {path}: {where} is malformed: {err}") from err
    return records


def validate_example(record: object, index: int) -> None:
    """Raise a UserError unless `record` is a flat SQuAD example whose answers match its context."""
    if not isinstance(record, dict):
        raise UserError(f"data.source: example {index} is not a JSON object")
    label = f"data.source: example {index} (id {record.get('id')!r})"
    missing = [field for field in FIELDS if field not in record]
    if missing:
        raise UserError(f"{label} is missing the field(s) {', '.join(missing)}")
    for field in ("id", "title", "context", "question"):
        if not isinstance(record[field], str):
            raise UserError(f"{label}: {field} must be a string")
    answers = record["answers"]
    if not isinstance(answers, dict) or not {"text", "answer_start"} <= answers.keys():
        raise UserError(f"{label}: answers must have 'text' and 'answer_start'")
    texts, starts = list(answers["text"]), list(answers["answer_start"])
    if not texts or len(texts) != len(starts) or not all(isinstance(text, str) for text in texts):
        raise UserError(f"{label}: answers needs as many answer_start as text strings, and at least one")
    context = record["context"]
    for text, start in zip(texts, starts):
        found = context[start:start + len(text)] if isinstance(start, int) and start >= 0 else None
        if found != text:
            raise UserError(
                f"{label}: answer {text!r} does not match the context at answer_start {start} (found {found!r})"
            )


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
