"""Batched prediction: longest-first batches, logits handed back in the features' own order."""
import datasets
import numpy as np
import pytest
import torch
from helpers import make_examples

from squad_ft.features import tokenize
from squad_ft.inference import predict_logits
from squad_ft.modeling import load_pretrained, load_tokenizer


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_logits_come_back_in_feature_order_whatever_the_batching(tiny_model_dir, batch_size):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    torch.manual_seed(0)
    model = load_pretrained(str(tiny_model_dir)).eval()
    examples = make_examples(12)
    for i, example in enumerate(examples):  # contexts of several lengths, some longer than a window
        example["context"] = " ".join([example["context"]] * (1 + i % 3))
    examples = datasets.Dataset.from_list(examples)
    features = tokenize(examples, tokenizer, {"max_length": 64, "doc_stride": 16, "max_question_length": 16}, training=False)
    lengths = [len(ids) for ids in features["input_ids"]]
    assert lengths != sorted(lengths, reverse=True)  # the batching reorders them
    start, end = predict_logits(model, tokenizer, features, batch_size=batch_size, precision="fp32")
    assert start.shape == end.shape == (len(features), max(lengths))
    for i, length in enumerate(lengths):  # each feature alone, unpadded
        inputs = {key: torch.tensor([features[i][key]]) for key in ("input_ids", "attention_mask")}
        with torch.no_grad():
            alone = model(**inputs)
        np.testing.assert_allclose(start[i, :length], alone.start_logits[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(end[i, :length], alone.end_logits[0].numpy(), atol=1e-5)
        assert (start[i, length:] == -100).all() and (end[i, length:] == -100).all()
