"""A LoRA linear layer whose adapter costs no elementwise passes over activations.

peft computes `base(x) + lora_B(lora_A(x)) * scaling`: besides the two small matrix products it
scales and adds a whole activation-sized tensor in the forward pass, scales it again in the
backward pass, and adds the adapter's input gradient to the frozen layer's. On a CPU these
passes over memory eat most of what freezing the base weights saves. Here the scaling and the
sums go into the matrix products themselves (`addmm_`, accumulating in place); the arithmetic,
the saved tensors and the trained parameters are peft's, and so is everything else: saving,
loading, merging. Registered with peft's custom-module API (`LoraConfig._register_custom_module`)
so a model trained with it saves an ordinary peft adapter.

A fused layer fed by an exact GELU (`keep_gelu_inputs`) also saves less: it saves the GELU's
input, which GELU's own backward keeps anyway, instead of its output, and recomputes the output
in the backward pass. One GELU per layer and step buys back a tokens x feed-forward-width tensor
per layer, a fifth of the activations a training step keeps.
"""
from __future__ import annotations

import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from transformers.activations import GELUActivation

GELU_INPUT = "_gelu_input"  # on a GELU output: (its input, the output's version when computed)
GELU_BLOCK_ROWS = 512  # rows of a recomputed GELU output at a time: a block stays in the CPU's cache


class _LoraLinearFunction(torch.autograd.Function):
    """`x @ weight.T + bias + scaling * (x @ lora_a.T) @ lora_b.T` with `weight` and `bias` frozen,
    computed in `dtype`: the autocast dtype under mixed precision (the products in bf16 or fp16, as
    autocast computes peft's), else the tensors' own. The gradients come back in each input's dtype
    (fp32 for the adapter weights, as peft keeps them)."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling: float, gelu_input: torch.Tensor | None,
                dtype: torch.dtype):
        with torch.autocast(x.device.type, enabled=False):  # this function casts, once per tensor
            rows = x.reshape(-1, x.shape[-1]).to(dtype)
            lora_a_, lora_b_ = lora_a.to(dtype), lora_b.to(dtype)
            hidden = rows @ lora_a_.T
            out = torch.nn.functional.linear(rows, frozen_in(weight, dtype), None if bias is None else frozen_in(bias, dtype))
            out.addmm_(hidden, lora_b_.T, alpha=scaling)
        # the frozen weight is saved as it is (a parameter: no memory); its cast is kept across steps (`frozen_in`)
        ctx.save_for_backward(rows if gelu_input is None else gelu_input, hidden, weight, lora_a_, lora_b_)
        ctx.recompute_gelu = gelu_input is not None
        ctx.scaling, ctx.dtype, ctx.input_shape, ctx.input_dtype = scaling, dtype, x.shape, x.dtype
        ctx.adapter_dtypes = lora_a.dtype, lora_b.dtype
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        rows, hidden, weight, lora_a, lora_b = ctx.saved_tensors
        with torch.autocast(grad_out.device.type, enabled=False):
            grad_rows = grad_out.reshape(-1, grad_out.shape[-1]).to(ctx.dtype)
            grad_hidden = (grad_rows @ lora_b).mul_(ctx.scaling)
            grad_lora_b = (grad_rows.T @ hidden).mul_(ctx.scaling)
            if ctx.recompute_gelu:
                grad_lora_a = _times_gelu(grad_hidden.T, rows.reshape(-1, rows.shape[-1]), ctx.dtype)
            else:
                grad_lora_a = grad_hidden.T @ rows
            grad_x = None
            if ctx.needs_input_grad[0] and ctx.dtype == ctx.input_dtype:
                grad_x = (grad_rows @ frozen_in(weight, ctx.dtype)).addmm_(grad_hidden, lora_a).view(ctx.input_shape)
            elif ctx.needs_input_grad[0]:  # as autocast sums peft's two branches: each cast back, then added
                grad_x = (grad_rows @ frozen_in(weight, ctx.dtype)).to(ctx.input_dtype)
                grad_x = grad_x.add_((grad_hidden @ lora_a).to(ctx.input_dtype)).view(ctx.input_shape)
        grad_lora_a, grad_lora_b = (grad.to(dtype) for grad, dtype in zip((grad_lora_a, grad_lora_b), ctx.adapter_dtypes))
        return grad_x, None, None, grad_lora_a, grad_lora_b, None, None, None


CAST = "_cast_for_fused_lora"  # on a frozen parameter: (dtype, version, storage when cast), the storage, the cast


def frozen_in(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A frozen weight in `dtype`: cast once and kept (on the weight, a copy in `dtype` for the run) while the
    weight is unchanged, instead of once in every forward and backward pass as autocast casts a weight that
    needs no gradient. A weight changed in place (a loaded checkpoint) has another version, one given new
    storage another storage (the cast keeps the old one, so its address cannot be reused): either is cast
    again. Writes through `.data`, which leave the version as it was, must call `forget_cast` (merge does)."""
    if weight.dtype == dtype:
        return weight
    storage = weight.untyped_storage()
    key = (dtype, weight._version, storage.data_ptr())
    cached = getattr(weight, CAST, None)
    if cached is None or cached[0] != key:
        cached = (key, storage, weight.detach().to(dtype))
        setattr(weight, CAST, cached)
    return cached[2]


def forget_cast(*weights: torch.Tensor | None) -> None:
    """Drop the kept casts of `weights` (changed through `.data`, which no version counter sees)."""
    for weight in weights:
        if weight is not None and hasattr(weight, CAST):
            delattr(weight, CAST)


def _times_gelu(left: torch.Tensor, gelu_input: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`left @ gelu(gelu_input)`, each block's product in `dtype`, recomputing the GELU a block of rows
    at a time: no output-sized tensor is written to memory and read back. The GELU runs in its input's
    dtype, as in the forward pass, so the recomputed output is the one the forward pass used. The blocks
    are summed in at least fp32: a bf16 sum would round once per block, where one matrix product
    (peft's) rounds once in all."""
    product = left.new_zeros(left.shape[0], gelu_input.shape[1], dtype=torch.promote_types(dtype, torch.float32))
    for start in range(0, gelu_input.shape[0], GELU_BLOCK_ROWS):
        block = slice(start, start + GELU_BLOCK_ROWS)
        product += left[:, block] @ torch.nn.functional.gelu(gelu_input[block]).to(dtype)
    return product


class GeluKeepingInput(torch.nn.Module):
    """Exact GELU whose output remembers its input, for a fused LoRA layer it feeds to save instead."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.nn.functional.gelu(x)
        setattr(out, GELU_INPUT, (x, out._version))
        return out


def keep_gelu_inputs(model: torch.nn.Module) -> None:
    """Replace `model`'s exact-GELU activation modules with `GeluKeepingInput`."""
    exact = [
        name for name, module in model.named_modules()
        if (type(module) is GELUActivation and module.act is torch.nn.functional.gelu)
        or (type(module) is torch.nn.GELU and module.approximate == "none")
    ]
    for name in exact:
        parent, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent), attribute, GeluKeepingInput())


def _gelu_input(x: torch.Tensor) -> torch.Tensor | None:
    """The input of the GELU that computed `x`, if `x` is a `GeluKeepingInput` output not changed since."""
    source, version = getattr(x, GELU_INPUT, (None, None))
    return source if version == x._version else None


class FusedLoraLinear(LoraLinear):
    """peft's LoRA `Linear`, with the fused path whenever it computes the same thing: one active
    plain adapter, not merged, no adapter dropout, frozen base layer, and either autocast (CPU or
    CUDA, computing in its dtype) or the input, weights and adapter in one dtype. Anything else
    (dropout, DoRA, several adapters, mixed batches, trainable bias) is peft's own forward."""

    def _fused_adapter(self, x: torch.Tensor, args, kwargs) -> str | None:
        if args or kwargs or self.disable_adapters or self.merged or len(self.active_adapters) != 1:
            return None
        adapter = self.active_adapters[0]
        base = self.get_base_layer()
        frozen = not base.weight.requires_grad and (base.bias is None or not base.bias.requires_grad)
        plain = (adapter in self.lora_A and adapter not in self.lora_variant
                 and isinstance(self.lora_dropout[adapter], torch.nn.Identity))
        autocast = torch.is_autocast_enabled(x.device.type)
        same_dtype = x.dtype == base.weight.dtype == self.lora_A[adapter].weight.dtype
        return adapter if frozen and plain and (autocast or same_dtype) and not self.fan_in_fan_out else None

    def merge(self, *args, **kwargs) -> None:
        super().merge(*args, **kwargs)  # peft adds the adapter to the base weight through `.data`
        forget_cast(self.get_base_layer().weight, self.get_base_layer().bias)

    def unmerge(self, *args, **kwargs) -> None:
        super().unmerge(*args, **kwargs)
        forget_cast(self.get_base_layer().weight, self.get_base_layer().bias)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        adapter = self._fused_adapter(x, args, kwargs)
        if adapter is None:
            return super().forward(x, *args, **kwargs)
        base = self.get_base_layer()
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        return _LoraLinearFunction.apply(x, base.weight, base.bias, self.lora_A[adapter].weight,
                                         self.lora_B[adapter].weight, self.scaling[adapter], _gelu_input(x), dtype)
