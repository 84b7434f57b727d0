"""Tokenization: windows, gold labels that decode back to the answer, evaluation offsets."""
import datasets
import numpy as np
import pytest
from helpers import SAMPLE_SQUAD, make_examples

from squad_ft.data import load_examples
from squad_ft.features import count_long_questions, eval_features, tokenize, train_features
from squad_ft.postprocess import best_answers

MAX_LENGTH, STRIDE = 128, 32  # short windows: most real contexts span several features
WINDOW = {"max_length": MAX_LENGTH, "doc_stride": STRIDE, "max_question_length": 64}
DEFAULT_WINDOW = {"max_length": 384, "doc_stride": 128, "max_question_length": 64}  # params.yaml's


@pytest.fixture(scope="module")
def real_examples():
    return load_examples(str(SAMPLE_SQUAD), 300)


def labelled_windows(examples, tokenizer):
    """Training features with their example, as decoded through offsets and sequence ids."""
    batch = examples[:]
    encoded = train_features(batch, tokenizer, WINDOW)
    again = tokenizer(
        [q.lstrip() for q in batch["question"]], batch["context"], truncation="only_second",
        max_length=MAX_LENGTH, stride=STRIDE, return_overflowing_tokens=True, return_offsets_mapping=True,
    )
    for i, sample in enumerate(again["overflow_to_sample_mapping"]):
        yield examples[sample], encoded, i, again["offset_mapping"][i], again.sequence_ids(i)


def test_gold_labels_decode_to_the_gold_answer(real_examples, minilm_tokenizer):
    inside = outside = 0
    for example, encoded, i, offsets, sequence_ids in labelled_windows(real_examples, minilm_tokenizer):
        start_char = example["answers"]["answer_start"][0]
        end_char = start_char + len(example["answers"]["text"][0])
        context_tokens = [k for k, s in enumerate(sequence_ids) if s == 1]
        window = (offsets[context_tokens[0]][0], offsets[context_tokens[-1]][1])
        start, end = encoded["start_positions"][i], encoded["end_positions"][i]
        if window[0] <= start_char and end_char <= window[1]:
            inside += 1
            decoded = example["context"][offsets[start][0]:offsets[end][1]]
            # The smallest token span covering the answer: equal to it unless the answer
            # starts or ends inside a word piece (then the span covers the whole piece).
            assert offsets[start][0] <= start_char < offsets[start][1]
            assert offsets[end][0] < end_char <= offsets[end][1]
            assert example["answers"]["text"][0] in decoded
        else:
            outside += 1
            assert start == end == encoded["input_ids"][i].index(minilm_tokenizer.cls_token_id) == 0
    assert inside >= 300 and outside > 100  # both cases really exercised


def test_most_real_answers_are_recovered_exactly(real_examples, minilm_tokenizer):
    exact = total = 0
    for example, encoded, i, offsets, _ in labelled_windows(real_examples, minilm_tokenizer):
        start, end = encoded["start_positions"][i], encoded["end_positions"][i]
        if start != 0:
            total += 1
            exact += example["context"][offsets[start][0]:offsets[end][1]] == example["answers"]["text"][0]
    assert exact / total > 0.99  # 99.4% on the first 5,000; the rest end inside a word piece


def test_gold_logits_decode_to_the_gold_answers(real_examples, minilm_tokenizer):
    """Post-processing over real multi-window features picks the labelled span of every example."""
    training = tokenize(real_examples, minilm_tokenizer, WINDOW, training=True)
    evaluation = tokenize(real_examples, minilm_tokenizer, WINDOW, training=False)
    assert len(evaluation) == len(training) > len(real_examples)
    length = max(len(ids) for ids in evaluation["input_ids"])
    start_logits = np.full((len(evaluation), length), -100.0)
    end_logits = start_logits.copy()
    for i, (start, end) in enumerate(zip(training["start_positions"], training["end_positions"])):
        start_logits[i, start] = end_logits[i, end] = 0.0 if start == 0 else 10.0
    predictions = best_answers(real_examples, evaluation, start_logits, end_logits, 20, 30)
    for example in real_examples:
        assert example["answers"]["text"][0] in predictions[example["id"]]["text"]


def test_eval_features_keep_example_ids_and_context_offsets_only(minilm_tokenizer):
    examples = datasets.Dataset.from_list(make_examples(3))
    encoded = eval_features(examples[:], minilm_tokenizer, {"max_length": 32, "doc_stride": 8, "max_question_length": 16})
    assert set(encoded["example_id"]) == {"q0000", "q0001", "q0002"}
    assert len(encoded["input_ids"]) > 3  # contexts longer than one window
    for i, offsets in enumerate(encoded["offset_mapping"]):
        sequence_ids = encoded.sequence_ids(i)
        assert [o is not None for o in offsets] == [s == 1 for s in sequence_ids]


def test_nothing_is_padded(minilm_tokenizer):
    examples = datasets.Dataset.from_list(make_examples(4))
    encoded = train_features(examples[:], minilm_tokenizer, DEFAULT_WINDOW)
    assert all(minilm_tokenizer.pad_token_id not in ids for ids in encoded["input_ids"])


def test_a_question_longer_than_the_window_is_cut_to_max_question_length(real_examples, minilm_tokenizer):
    """A real question made 500 tokens long (more than max_length) is cut to its first 64 tokens, in
    training and evaluation features alike; the other questions' features are unchanged."""
    examples = real_examples.select(range(20)).to_list()
    long_question = " ".join([examples[3]["question"]] * 50)
    assert len(minilm_tokenizer(long_question)["input_ids"]) > DEFAULT_WINDOW["max_length"]
    examples[3]["question"] = long_question
    examples = datasets.Dataset.from_list(examples)
    assert count_long_questions(examples, minilm_tokenizer, 64) == 1
    cut = minilm_tokenizer(long_question, add_special_tokens=False)["input_ids"][:64]
    for training in (True, False):
        features = tokenize(examples, minilm_tokenizer, DEFAULT_WINDOW, training)
        for feature in features:
            question = feature["input_ids"][1:feature["input_ids"].index(minilm_tokenizer.sep_token_id)]
            if feature["input_ids"][1:65] == cut:
                assert question == cut
            else:
                assert len(question) < 64
        assert sum(feature["input_ids"][1:65] == cut for feature in features) >= 1


def test_questions_within_the_limit_give_the_features_of_the_plain_tokenizer(real_examples, minilm_tokenizer):
    """With no question cut, features are exactly the tokenizer's own windows, as before the cut existed."""
    assert count_long_questions(real_examples, minilm_tokenizer, DEFAULT_WINDOW["max_question_length"]) == 0
    batch = real_examples[:]
    for make in (train_features, eval_features):
        encoded = make(batch, minilm_tokenizer, DEFAULT_WINDOW)
        plain = minilm_tokenizer([q.lstrip() for q in batch["question"]], batch["context"], truncation="only_second",
                                 max_length=384, stride=128, return_overflowing_tokens=True, return_offsets_mapping=True)
        assert encoded["input_ids"] == plain["input_ids"]
        assert encoded["attention_mask"] == plain["attention_mask"]
