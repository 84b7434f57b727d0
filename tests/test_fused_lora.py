"""The fused LoRA layer computes what peft's computes: the same loss, the same gradients."""
import copy
from functools import partial

import pytest
import torch
from helpers import tiny_bert, tiny_distilbert
from peft import LoraConfig, TaskType, get_peft_model

from squad_ft import fused_lora
from squad_ft.memory import saved_for_backward_mb
from squad_ft.modeling import QA_HEAD, add_lora

# without dropout, so that two forward passes can be compared exactly
tiny_distilbert = partial(tiny_distilbert, dropout=0.0, attention_dropout=0.0, qa_dropout=0.0)
tiny_bert = partial(tiny_bert, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def fused_and_peft(build, dropout=0.0):
    """The same LoRA model twice: through `add_lora` (fused) and through plain peft, with non-zero
    adapters (peft starts lora_B at zero, which would hide a wrong adapter path)."""
    base = build()
    fused = add_lora(copy.deepcopy(base), r=4, alpha=8, dropout=dropout, target_modules="all-linear")
    plain = get_peft_model(copy.deepcopy(base), LoraConfig(
        task_type=TaskType.QUESTION_ANS, r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear",
        exclude_modules=[QA_HEAD]))
    return with_random_adapters(fused, plain, scale=0.5)


def with_random_adapters(fused, plain, scale):
    """`fused` and `plain` with the same random trained weights added to `fused`'s."""
    with torch.no_grad():
        for parameter in fused.parameters():
            if parameter.requires_grad:
                parameter.add_(scale * torch.randn_like(parameter))
    plain.load_state_dict(fused.state_dict())
    return fused, plain


def a_batch(seed=1):
    """Three sequences of 12 tokens, two of them padded, with answer spans."""
    torch.manual_seed(seed)
    return {
        "input_ids": torch.randint(0, 50, (3, 12)),
        "attention_mask": torch.tensor([[1] * 12, [1] * 9 + [0] * 3, [1] * 5 + [0] * 7]),
        "start_positions": torch.tensor([1, 4, 2]),
        "end_positions": torch.tensor([3, 6, 2]),
    }


def loss_and_gradients(model, seed=1):
    batch = a_batch(seed)
    model.train()
    torch.manual_seed(seed)
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters() if p.requires_grad}


@pytest.fixture
def fused_calls(monkeypatch):
    """The fused function's calls: whether each was given the input of the GELU that fed it."""
    calls = []
    original = fused_lora._LoraLinearFunction.apply

    def counting(*args):
        calls.append(args[6] is not None)  # gelu_input
        return original(*args)

    monkeypatch.setattr(fused_lora._LoraLinearFunction, "apply", counting)
    return calls


@pytest.mark.parametrize("gelu_block_rows", [512, 5])  # the batch's 36 rows in one block, and in 8
@pytest.mark.parametrize("build, adapted", [(tiny_distilbert, 6 * 2), (tiny_bert, 6 * 2)])
def test_fused_layers_give_peft_loss_and_gradients(build, adapted, gelu_block_rows, fused_calls, monkeypatch):
    monkeypatch.setattr(fused_lora, "GELU_BLOCK_ROWS", gelu_block_rows)
    fused, plain = fused_and_peft(build)
    fused_loss, fused_grads = loss_and_gradients(fused)
    assert len(fused_calls) == adapted  # every adapted layer of both blocks took the fused path
    assert sum(fused_calls) == 2  # each block's feed-forward output layer saved the GELU's input
    plain_loss, plain_grads = loss_and_gradients(plain)
    assert len(fused_calls) == adapted  # plain peft never does
    torch.testing.assert_close(fused_loss, plain_loss)
    assert fused_grads.keys() == plain_grads.keys()
    assert any("lora_A" in name for name in fused_grads) and any("lora_B" in name for name in fused_grads)
    for name in fused_grads:
        torch.testing.assert_close(fused_grads[name], plain_grads[name], rtol=1e-4, atol=1e-4, msg=name)  # float summation order differs
    base_weights = [p for name, p in fused.named_parameters() if "base_layer" in name]
    assert base_weights and all(p.grad is None for p in base_weights)


@pytest.mark.parametrize("build", [tiny_distilbert, tiny_bert])
def test_gradient_checkpointing_recomputes_through_the_fused_layers(build, fused_calls):
    fused, plain = fused_and_peft(build)
    fused.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    fused_loss, fused_grads = loss_and_gradients(fused)
    plain_loss, plain_grads = loss_and_gradients(plain)
    assert len(fused_calls) == 2 * 12  # forward, and the recomputation in backward
    assert sum(fused_calls) == 2 * 2  # in both, each block's feed-forward output layer saved the GELU's input
    torch.testing.assert_close(fused_loss, plain_loss)
    assert fused_grads.keys() == plain_grads.keys()
    assert all(p.grad is None for name, p in fused.named_parameters() if "base_layer" in name)
    for name in fused_grads:
        torch.testing.assert_close(fused_grads[name], plain_grads[name], rtol=1e-4, atol=1e-4, msg=name)  # float summation order differs


def test_adapter_dropout_takes_peft_own_path(fused_calls):
    fused, plain = fused_and_peft(tiny_distilbert, dropout=0.3)
    fused_loss, fused_grads = loss_and_gradients(fused)
    plain_loss, plain_grads = loss_and_gradients(plain)
    assert fused_calls == []
    torch.testing.assert_close(fused_loss, plain_loss)  # same seed, same dropout masks
    assert fused_grads.keys() == plain_grads.keys()
    for name, gradient in fused_grads.items():
        torch.testing.assert_close(gradient, plain_grads[name], msg=name)


def test_disabled_adapters_give_the_base_model(fused_calls):
    fused, _ = fused_and_peft(tiny_distilbert)
    base = tiny_distilbert()
    inputs = {"input_ids": torch.tensor([[1, 5, 7, 9, 2]])}
    with torch.no_grad(), fused.disable_adapter():
        adapted_off, reference = fused(**inputs), base(**inputs)
    torch.testing.assert_close(adapted_off.start_logits, reference.start_logits)
    torch.testing.assert_close(adapted_off.end_logits, reference.end_logits)
    assert fused_calls == []


def test_layers_fed_by_gelu_save_its_input_instead_of_its_output(monkeypatch):
    batch = {key: value for key, value in a_batch().items() if key in ("input_ids", "attention_mask")}
    keeping = add_lora(tiny_bert(), r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    monkeypatch.setattr(fused_lora, "keep_gelu_inputs", lambda model: None)  # add_lora imports it when called
    not_keeping = add_lora(tiny_bert(), r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    saved_keeping, _ = saved_for_backward_mb(keeping.train(), batch)
    saved_not_keeping, _ = saved_for_backward_mb(not_keeping.train(), batch)
    gelu_outputs = 2 * 3 * 12 * 64 * 4  # blocks x batch x tokens x feed-forward width x 4 bytes
    assert (saved_not_keeping - saved_keeping) * 2**20 == pytest.approx(gelu_outputs)


def test_a_gelu_output_changed_in_place_is_saved_itself():
    gelu_input = torch.randn(4, 8, requires_grad=True)
    output = fused_lora.GeluKeepingInput()(gelu_input)
    assert fused_lora._gelu_input(output) is gelu_input
    output.mul_(2)  # no longer GELU(input): the layer it feeds must save it
    assert fused_lora._gelu_input(output) is None


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.float() - expected.float()).norm() / expected.float().norm())


@pytest.mark.parametrize("build", [tiny_distilbert, tiny_bert])
def test_under_bf16_autocast_the_fused_path_gives_peft_loss_and_fp32_gradients(build, fused_calls):
    """Mixed precision as the Trainer runs it on a CPU (torch.autocast, bf16): every adapted layer takes the
    fused path, the loss is within twice peft's bf16 error of full precision, and the adapter weights'
    gradients stay fp32 like peft's. (How close the gradients are is tested per layer, below: in a tiny random model
    bf16 rounding grows through the layers until peft's own bf16 gradients of some weights are 50-100%
    off full precision, so a whole-model comparison compares noise.)"""
    fused, plain = fused_and_peft(build)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused_loss, fused_grads = loss_and_gradients(fused)
        assert (len(fused_calls), sum(fused_calls)) == (12, 2)  # every adapted layer fused, GELU inputs kept
        plain_loss, plain_grads = loss_and_gradients(plain)
    assert len(fused_calls) == 12  # plain peft never is
    fp32_loss, _ = loss_and_gradients(fused_and_peft(build)[1])  # the reference: peft in full precision
    assert fused_loss.dtype == plain_loss.dtype == torch.float32
    assert abs(fused_loss - fp32_loss) <= 2 * abs(plain_loss - fp32_loss) + 1e-3
    assert fused_grads.keys() == plain_grads.keys()
    for name, gradient in fused_grads.items():
        assert gradient.dtype == plain_grads[name].dtype == torch.float32, name


@pytest.mark.parametrize("fed_by_gelu", [False, True])
def test_under_bf16_autocast_a_fused_layer_is_as_accurate_as_peft(fed_by_gelu, fused_calls, monkeypatch):
    """One layer at the width of the models trained here (384 in, 1,536 in after the GELU), 2,048 rows:
    the output, the input's gradient and the adapter weights' gradients, in bf16, are no further from
    float64 than peft's. The GELU-fed layer gets a bf16 GELU input, as from the autocast layer before it
    in training, and recomputes the GELU in 16 blocks of rows: their sum must not round once per block."""
    monkeypatch.setattr(fused_lora, "GELU_BLOCK_ROWS", 128)
    in_features = 1536 if fed_by_gelu else 384
    model = tiny_bert(hidden_size=384, intermediate_size=1536, num_hidden_layers=1, num_attention_heads=6)
    name = "bert.encoder.layer.0." + ("output.dense" if fed_by_gelu else "attention.self.query")
    fused, plain = (add_lora(copy.deepcopy(model), r=8, alpha=16, dropout=0.0, target_modules="all-linear", fused=fuse)
                    for fuse in (True, False))
    torch.manual_seed(0)
    fused, plain = with_random_adapters(fused, plain, scale=0.05)
    x, grad_out = torch.randn(2048, in_features), torch.randn(2048, 384)
    if fed_by_gelu:  # a bf16 linear's output in training; float64 computes from the same values
        x = x.bfloat16()

    def outputs_and_gradients(layer, dtype, gelu):
        pre_activation = x.to(dtype).requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype != torch.float64):
            out = layer(gelu(pre_activation) if fed_by_gelu else pre_activation)
        out.backward(grad_out.to(out.dtype))
        adapter = [p.grad for n, p in layer.named_parameters() if "lora_" in n]
        return [out.detach(), pre_activation.grad, *adapter]

    fused_layer, plain_layer = (m.get_submodule("base_model.model." + name) for m in (fused, plain))
    assert isinstance(fused_layer, fused_lora.FusedLoraLinear) and not isinstance(plain_layer, fused_lora.FusedLoraLinear)
    exact = outputs_and_gradients(copy.deepcopy(plain_layer).double(), torch.float64, torch.nn.functional.gelu)
    fused_bf16 = outputs_and_gradients(fused_layer, x.dtype, fused_lora.GeluKeepingInput())
    assert fused_calls == [fed_by_gelu]  # the fused path ran, recomputing the GELU if fed by one
    plain_bf16 = outputs_and_gradients(plain_layer, x.dtype, torch.nn.functional.gelu)
    for what, got, peft_own, expected in zip(["output", "input gradient", "lora_A gradient", "lora_B gradient"],
                                             fused_bf16, plain_bf16, exact, strict=True):
        fused_error, plain_error = relative_error(got, expected), relative_error(peft_own, expected)
        assert 0 < fused_error <= 1.1 * plain_error, (what, fused_error, plain_error)  # 0: bf16 was used


def test_a_fused_layer_under_autocast_computes_in_the_autocast_dtype():
    fused = add_lora(tiny_bert(), r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    layer = next(module for module in fused.modules() if isinstance(module, fused_lora.FusedLoraLinear))
    x = torch.randn(2, 5, layer.in_features, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32 and layer.lora_A["default"].weight.grad.dtype == torch.float32


def test_lora_fused_false_is_peft_own_path(fused_calls):
    plain = add_lora(tiny_distilbert(), r=4, alpha=8, dropout=0.0, target_modules="all-linear", fused=False)
    assert not [m for m in plain.modules() if isinstance(m, (fused_lora.FusedLoraLinear, fused_lora.GeluKeepingInput))]
    fused = add_lora(tiny_distilbert(), r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    fused.load_state_dict(plain.state_dict())
    plain_loss, _ = loss_and_gradients(plain)
    assert fused_calls == []
    fused_loss, _ = loss_and_gradients(fused)
    assert len(fused_calls) == 12
    torch.testing.assert_close(fused_loss, plain_loss)


def test_a_frozen_weight_is_cast_once_and_again_only_when_changed():
    """Under autocast the fused path casts each frozen weight once for the run, not in every forward and
    backward pass: the second step uses the first step's casts, gives the loss of a model never cast before,
    and a weight changed in place (as a merge or a loaded checkpoint changes it) is cast again."""
    fused = add_lora(tiny_bert(), r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    bases = [m.get_base_layer() for m in fused.modules() if isinstance(m, fused_lora.FusedLoraLinear)]

    def casts():
        return [getattr(base.weight, fused_lora.CAST, (None, None, None))[2] for base in bases]

    assert all(cast is None for cast in casts())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first_loss, _ = loss_and_gradients(fused, seed=1)
        first = casts()
        assert all(cast is not None and cast.dtype == torch.bfloat16 for cast in first)
        fused.zero_grad()
        uncached = add_lora(tiny_bert(), r=4, alpha=8, dropout=0.0, target_modules="all-linear")
        uncached.load_state_dict(fused.state_dict())  # the same weights, never cast
        second_loss, second_grads = loss_and_gradients(fused, seed=2)
        assert all(a is b for a, b in zip(casts(), first))  # no weight cast again
        uncached_loss, uncached_grads = loss_and_gradients(uncached, seed=2)
        assert torch.equal(second_loss, uncached_loss) and second_loss != first_loss
        for name, gradient in second_grads.items():
            assert torch.equal(gradient, uncached_grads[name]), name
        with torch.no_grad():
            bases[0].weight.mul_(2.0)
        loss_and_gradients(fused, seed=2)
        again = casts()
        assert again[0] is not first[0] and torch.equal(again[0], bases[0].weight.bfloat16())
        assert all(a is b for a, b in zip(again[1:], first[1:]))
    # peft merges and unmerges through `.data`, which no version counter sees: the casts are dropped
    fused.merge_adapter()
    assert all(cast is None for cast in casts())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_and_gradients(fused, seed=2)  # merged: peft's own path, which casts nothing to keep
    fused.unmerge_adapter()
    assert all(cast is None for cast in casts())
