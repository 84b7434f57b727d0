"""LoRA wrapping for both architectures, parameter counts, clear errors, loading trained models."""
import pytest
import torch
from helpers import tiny_bert, tiny_distilbert
from transformers import AutoModelForQuestionAnswering

from squad_ft.modeling import add_lora, count_parameters, linear_module_names, load_pretrained, load_trained
from squad_ft.errors import UserError


def lora_size(model, r, names=None):
    """What LoRA must add: r x (in + out) for each adapted linear layer."""
    return sum(
        r * (module.in_features + module.out_features) for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not name.startswith("qa_outputs")
        and (names is None or name.rsplit(".", 1)[-1] in names)
    )


@pytest.mark.parametrize("build, names", [
    (tiny_distilbert, ["k_lin", "lin1", "lin2", "out_lin", "q_lin", "v_lin"]),
    (tiny_bert, ["dense", "key", "query", "value"]),
])
def test_all_linear_adapts_every_encoder_layer_and_trains_the_head(build, names):
    model = build()
    assert linear_module_names(model) == names
    expected = lora_size(model, r=4) + 32 * 2 + 2  # adapters + QA head (hidden x 2 + 2)
    wrapped = add_lora(model, r=4, alpha=8, dropout=0.1, target_modules="all-linear")
    trainable, total = count_parameters(wrapped)
    assert trainable == expected
    trained = {name for name, p in wrapped.named_parameters() if p.requires_grad}
    assert any("qa_outputs" in name for name in trained)
    assert all("lora_" in name or "qa_outputs" in name for name in trained)
    assert total > trainable


def test_a_list_of_target_modules():
    model = tiny_distilbert()
    expected = lora_size(model, r=8, names={"q_lin", "v_lin"}) + 66
    wrapped = add_lora(model, r=8, alpha=16, dropout=0.0, target_modules=["q_lin", "v_lin"])
    assert count_parameters(wrapped)[0] == expected


def test_unknown_target_modules_list_the_ones_that_exist():
    with pytest.raises(UserError) as caught:
        add_lora(tiny_distilbert(), r=8, alpha=16, dropout=0.0, target_modules=["query", "value"])
    message = str(caught.value)
    assert "lora.target_modules: ['query', 'value'] not in this distilbert model" in message
    assert "k_lin, lin1, lin2, out_lin, q_lin, v_lin" in message


def test_saved_lora_model_loads_back_merged_with_the_same_outputs(tmp_path):
    base = tmp_path / "base"
    tiny_distilbert().save_pretrained(base)
    wrapped = add_lora(AutoModelForQuestionAnswering.from_pretrained(base), 4, 8, 0.0, "all-linear")
    with torch.no_grad():  # make the adapters and head non-trivial
        for name, parameter in wrapped.named_parameters():
            if parameter.requires_grad:
                parameter.add_(0.1 * torch.randn_like(parameter))
    wrapped.save_pretrained(tmp_path / "lora")
    loaded = load_trained(tmp_path / "lora")
    inputs = {"input_ids": torch.tensor([[1, 5, 7, 9, 2]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    wrapped.eval()
    with torch.no_grad():
        expected, got = wrapped(**inputs), loaded(**inputs)
    assert "lora" not in str(type(loaded)).lower()
    torch.testing.assert_close(got.start_logits, expected.start_logits)
    torch.testing.assert_close(got.end_logits, expected.end_logits)


def test_missing_model_directory_is_named_as_a_missing_path(tmp_path):
    with pytest.raises(UserError, match="model.name: no such file or directory: .*no-such-model"):
        load_pretrained(str(tmp_path / "no-such-model"))


def test_a_folder_that_is_no_model_names_the_parameter(tmp_path):
    with pytest.raises(UserError, match="model.name: .* is not a loadable model directory.* Set model.name"):
        load_pretrained(str(tmp_path))


def test_attention_dropout_is_replaced_only_when_set(tiny_model_dir, monkeypatch):
    assert load_pretrained(str(tiny_model_dir)).config.attention_dropout == 0.1  # DistilBERT's own
    model = load_pretrained(str(tiny_model_dir), attention_dropout=0.0)
    assert model.config.attention_dropout == 0.0
    assert all(layer.attention.dropout.p == 0.0 for layer in model.distilbert.transformer.layer)
    monkeypatch.setattr("squad_ft.modeling.ATTENTION_DROPOUT_KEYS", ("attn_pdrop",))
    with pytest.raises(UserError, match="this distilbert model has no attention dropout setting; set "
                                        "train.attention_dropout to null"):
        load_pretrained(str(tiny_model_dir), attention_dropout=0.0)
