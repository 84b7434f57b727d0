"""Loading each input format, validation with clear errors, and the deterministic split."""
import json

import pandas as pd
import pytest
from helpers import SAMPLE_SQUAD, SHARED_SQUAD, make_examples, to_nested, write_jsonl

from squad_ft.data import load_examples, overlap_with, split_examples, unseen_examples
from squad_ft.errors import UserError


@pytest.fixture
def examples():
    examples = make_examples(6)
    (city,), (start,) = examples[0]["answers"].values()
    examples[0]["answers"] = {"text": [city, f"{city} ."], "answer_start": [start, start]}  # two references
    return examples


def test_nested_json_lines_and_parquet_load_the_same_examples(tmp_path, examples):
    nested = tmp_path / "squad.json"
    nested.write_text(json.dumps(to_nested(examples)))
    jsonl = write_jsonl(examples, tmp_path / "squad.jsonl")
    parquet = tmp_path / "squad.parquet"
    pd.DataFrame(examples).to_parquet(parquet)

    for source in (nested, jsonl, parquet):
        loaded = load_examples(str(source), 6).to_list()
        assert loaded == examples, source.suffix


def test_keeps_the_first_n_examples_in_order(tmp_path, examples):
    source = write_jsonl(examples, tmp_path / "squad.jsonl")
    assert load_examples(str(source), 4)["id"] == [ex["id"] for ex in examples[:4]]


def error_of(source, n=6) -> str:
    with pytest.raises(UserError) as caught:
        load_examples(str(source), n)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_malformed_json_is_a_clear_error(tmp_path):
    bad = tmp_path / "squad.json"
    bad.write_text('{"data": [')
    assert "not valid JSON" in error_of(bad)
    lines = tmp_path / "squad.jsonl"
    lines.write_text(json.dumps(make_examples(1)[0]) + '\n{oops\n')
    assert "line 2 is not valid JSON" in error_of(lines)


def test_missing_fields_are_named(tmp_path, examples):
    nested = to_nested(examples)
    del nested["data"][1]["paragraphs"][0]["qas"][0]["question"]
    source = tmp_path / "squad.json"
    source.write_text(json.dumps(nested))
    assert "data[1].paragraphs[0].qas[0] is missing the field 'question'" in error_of(source)

    del examples[2]["answers"]
    assert "example 2 (id 'q0002') is missing the field(s) answers" in error_of(
        write_jsonl(examples, tmp_path / "flat.jsonl"))


def test_answer_start_must_match_the_context(tmp_path, examples):
    examples[3]["answers"]["answer_start"][0] += 1
    message = error_of(write_jsonl(examples, tmp_path / "squad.jsonl"))
    assert "example 3 (id 'q0003')" in message
    assert "does not match the context at answer_start" in message


def test_answer_start_must_be_an_integer(tmp_path, examples):
    examples[2]["answers"]["answer_start"][0] = str(examples[2]["answers"]["answer_start"][0])
    message = error_of(write_jsonl(examples, tmp_path / "squad.jsonl"))
    assert "example 2 (id 'q0002'): answer_start must be an integer (a character offset), got '" in message


def test_the_embedded_sample_is_the_official_files_first_ten_articles():
    sample = SAMPLE_SQUAD.read_bytes()
    nested = json.loads(sample)
    assert len(nested["data"]) == 10
    examples = load_examples(str(SAMPLE_SQUAD), 3286)  # every question validates
    assert (examples[0]["id"], examples[3285]["title"]) == ("5733be284776f41900661182", "Spectre_(2015_film)")
    if SHARED_SQUAD.exists():  # byte-identical slices: the official file's head, then its closing bytes
        official, tail = SHARED_SQUAD.read_bytes(), b'], "version": "1.1"}'
        assert sample.endswith(tail) and official.endswith(tail)
        assert official.startswith(sample[:-len(tail)]) and official[len(sample) - len(tail):].startswith(b", {")


def test_n_examples_larger_than_the_data(tmp_path, examples):
    source = write_jsonl(examples, tmp_path / "squad.jsonl")
    assert "data.n_examples is 7 but" in error_of(source, n=7)
    assert "has only 6 examples" in error_of(source, n=7)


def test_missing_local_file(tmp_path):
    assert "no such file" in error_of(tmp_path / "nowhere.json")


def test_real_squad_subset_is_the_reference_subset(shared_squad):
    examples = load_examples(str(shared_squad), 12_723)  # validates every example of the file
    assert examples[0]["id"] == "5733be284776f41900661182"
    assert examples[4999]["id"] == "56d0875b234ae51400d9c348"
    assert examples[4999]["title"] == "Solar_energy"


def test_split_is_deterministic_and_disjoint():
    from datasets import Dataset

    examples = Dataset.from_list(make_examples(50))
    first = split_examples(examples, 0.2, seed=42)
    again = split_examples(examples, 0.2, seed=42)
    other = split_examples(examples, 0.2, seed=7)
    assert (len(first["train"]), len(first["test"])) == (40, 10)
    assert (first["train"]["id"], first["test"]["id"]) == (again["train"]["id"], again["test"]["id"])
    assert sorted([*first["train"]["id"], *first["test"]["id"]]) == sorted(examples["id"])  # every example, once
    assert first["test"]["id"] != other["test"]["id"]
    assert not set(first["train"]["id"]) & set(first["test"]["id"])


def test_unsupported_file_type(tmp_path):
    source = tmp_path / "squad.csv"
    source.write_text("id,question\n")
    assert "is not a .json, .jsonl, .parquet file" in error_of(source)


def test_unseen_examples_drop_seen_articles_and_paragraphs_and_count_them():
    from datasets import Dataset

    train = Dataset.from_list(make_examples(30))
    renamed = {**make_examples(1)[0], "id": "r1", "title": "Another title"}  # a seen paragraph, new title
    unseen = make_examples(4, unseen=True)
    counts = {}
    kept = list(unseen_examples(make_examples(5, seed=3) + [renamed] + unseen, train, counts))
    assert [ex["id"] for ex in kept] == [ex["id"] for ex in unseen]
    assert counts == {"candidates": 10, "dropped_seen_article": 5, "dropped_seen_paragraph_only": 1, "unseen": 4}


def test_overlap_with_the_training_split():
    from datasets import Dataset

    train = Dataset.from_list(make_examples(30))
    mixed = Dataset.from_list(make_examples(3) + make_examples(1, unseen=True))
    assert overlap_with(mixed, train) == {"paragraph_overlap": 0.75, "article_overlap": 0.75}


def test_duplicate_ids_are_an_error_naming_the_id_and_its_positions(tmp_path):
    examples = make_examples(10)
    for i in (3, 7, 9):
        examples[i]["id"] = "q0001"
    examples[8]["id"] = "q0002"
    message = error_of(write_jsonl(examples, tmp_path / "squad.jsonl"), n=10)
    assert "duplicate question id 'q0001' at examples 1, 3, 7, 9" in message
    nested = tmp_path / "squad.json"  # the same in nested SQuAD JSON: positions in flattened order
    nested.write_text(json.dumps(to_nested(examples)))
    assert "duplicate question id 'q0001' at examples 1, 3, 7, 9" in error_of(nested, n=10)


def test_all_examples_and_streaming_stop_at_n(tmp_path):
    from squad_ft.data import stream_examples

    examples = make_examples(8)
    examples[6]["answers"]["answer_start"] = [0]  # broken, but beyond the first 5: never read
    source = write_jsonl(examples, tmp_path / "squad.jsonl")
    assert [ex["id"] for ex in stream_examples(str(source), 5)] == [ex["id"] for ex in examples[:5]]
    with pytest.raises(UserError, match="example 6"):
        list(stream_examples(str(source), None))  # all: every example is read and checked


@pytest.mark.parametrize("field", ["context", "question", "id"])
def test_empty_fields_are_errors_naming_the_example(tmp_path, field):
    examples = make_examples(6)
    examples[4][field] = "  "
    if field == "context":
        examples[4]["answers"] = {"text": [""], "answer_start": [0]}
    message = error_of(write_jsonl(examples, tmp_path / "squad.jsonl"))
    assert f"example 4 (id {examples[4]['id']!r})" in message
    assert f"{field} is empty" in message


def test_empty_answer_text_is_an_error(tmp_path):
    examples = make_examples(6)
    examples[2]["answers"] = {"text": [""], "answer_start": [0]}
    assert "example 2 (id 'q0002'): an answer text is empty" in error_of(write_jsonl(examples, tmp_path / "s.jsonl"))
