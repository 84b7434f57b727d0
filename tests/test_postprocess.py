"""n-best span decoding over all the features of an example."""
import numpy as np
from datasets import Dataset

from squad_ft.postprocess import best_answers

CONTEXT = "The cat sat on the mat"
#          0   4   8   12 15  19
WORDS = [(0, 3), (4, 7), (8, 11), (12, 14), (15, 18), (19, 22)]
EXAMPLES = Dataset.from_list([{"id": "e1", "context": CONTEXT}])


def feature(offsets):
    """A feature: [CLS] q [SEP] context... [SEP]; question and special tokens have no offset."""
    return [None, None, None, *offsets, None]


def logits(length, **peaks):
    values = np.zeros(length)
    for index, value in peaks.items():
        values[int(index[1:])] = value
    return values


def decode(features, starts, ends, n_best=20, max_answer_length=30):
    return best_answers(EXAMPLES, Dataset.from_list(features), np.array(starts), np.array(ends),
                        n_best, max_answer_length)["e1"]["text"]


def test_picks_the_highest_scoring_span():
    offsets = feature(WORDS)
    features = [{"example_id": "e1", "offset_mapping": offsets}]
    # start at "the" (token 7), end at "mat" (token 8)
    assert decode(features, [logits(10, t7=5, t4=1)], [logits(10, t8=5, t5=1)]) == "the mat"


def test_question_and_special_tokens_are_never_answers():
    features = [{"example_id": "e1", "offset_mapping": feature(WORDS)}]
    # the highest logits sit on [CLS] and a question token; the best valid span is "cat sat"
    assert decode(features, [logits(10, t0=9, t1=8, t4=2)], [logits(10, t0=9, t2=8, t5=2)]) == "cat sat"


def test_end_before_start_and_long_spans_are_skipped():
    features = [{"example_id": "e1", "offset_mapping": feature(WORDS)}]
    starts, ends = [logits(10, t6=9, t3=2, t4=0.5)], [logits(10, t4=9, t8=1)]
    # (6, 4) scores 18 but ends before it starts; (3, 4) "The cat" scores 11
    assert decode(features, starts, ends) == "The cat"
    # at most one token: (4, 4) "cat" scores 9.5
    assert decode(features, starts, ends, max_answer_length=1) == "cat"


def test_best_span_over_several_features_and_padding_ignored():
    first = feature(WORDS[:4])    # "The cat sat on", 8 tokens
    second = feature(WORDS[1:])   # "cat sat on the mat", 9 tokens
    features = [{"example_id": "e1", "offset_mapping": first}, {"example_id": "e1", "offset_mapping": second}]
    # the first feature padded to 9 positions, as the Trainer pads logits when concatenating batches
    starts = [logits(9, t4=3, t8=50), logits(9, t6=4)]
    ends = [logits(9, t5=3, t8=50), logits(9, t7=4)]
    # "cat sat" scores 6 in the first feature, "the mat" 8 in the second; position 8 of the
    # first feature is padding and never a candidate
    assert decode(features, starts, ends) == "the mat"


def test_answers_carry_their_score_and_character_offsets():
    features = Dataset.from_list([{"example_id": "e1", "offset_mapping": feature(WORDS)}])
    answer = best_answers(EXAMPLES, features, np.array([logits(10, t7=5)]), np.array([logits(10, t8=4)]), 20, 30)["e1"]
    assert answer == {"text": "the mat", "score": 9.0, "start": 15, "end": 22}
    assert CONTEXT[answer["start"]:answer["end"]] == answer["text"]
