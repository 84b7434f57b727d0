"""train.precision: what `auto` chooses on each kind of CPU (the detection forced either way), and the
Trainer flags each choice gives."""
import pytest
import torch

from squad_ft import device
from squad_ft.errors import UserError


@pytest.fixture
def cpu(monkeypatch, tmp_path):
    """A CPU-only machine whose /proc/cpuinfo lists the given flags."""
    def with_flags(*flags: str):
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: a CPU\nflags\t\t: fpu sse2 avx2 {' '.join(flags)}\n\n")
        real_path = device.Path
        monkeypatch.setattr(device, "Path", lambda path: cpuinfo if path == "/proc/cpuinfo" else real_path(path))
        device.cpu_flags.cache_clear()
        device._warn.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    yield with_flags
    device.cpu_flags.cache_clear()


@pytest.mark.parametrize("flags, chosen", [((), "fp32"), (("avx512_bf16",), "bf16"), (("amx_bf16", "amx_tile"), "bf16")])
def test_auto_is_bf16_only_where_the_cpu_computes_it_natively(cpu, capsys, flags, chosen):
    cpu(*flags)
    description, precision, trainer_flags = device.device_and_precision("auto")
    assert precision == chosen and description.endswith(f", {chosen})")
    assert trainer_flags == {"use_cpu": True, "bf16": chosen == "bf16", "fp16": False}
    assert capsys.readouterr().err == ""


def test_bf16_asked_on_a_cpu_that_emulates_it_runs_with_one_warning(cpu, capsys):
    cpu()
    for _ in range(3):
        assert device.device_and_precision("bf16")[1:] == ("bf16", {"use_cpu": True, "bf16": True, "fp16": False})
    assert capsys.readouterr().err.splitlines() == [
        "warning: train.precision bf16 on a CPU without native bf16 (no AMX or AVX512-BF16): it is emulated, "
        "slower than fp32"]


def test_fp32_is_fp32_everywhere(cpu):
    cpu("amx_bf16")
    assert device.device_and_precision("fp32")[1:] == ("fp32", {"use_cpu": True, "bf16": False, "fp16": False})


def test_fp16_on_a_cpu_is_one_line_naming_the_parameter(cpu):
    cpu()
    with pytest.raises(UserError, match="train.precision fp16 needs a CUDA GPU"):
        device.device_and_precision("fp16")


def test_the_trainer_gets_the_chosen_precision(cpu, tmp_path):
    cpu("avx512_bf16")
    arguments = device.trainer_arguments(str(tmp_path), "auto")
    assert (arguments.bf16, arguments.fp16, arguments.use_cpu) == (True, False, True)
    cpu()
    arguments = device.trainer_arguments(str(tmp_path), "auto")
    assert (arguments.bf16, arguments.fp16, arguments.use_cpu) == (False, False, True)


def test_this_machine_is_read_as_it_is():
    """The real /proc/cpuinfo: auto is bf16 exactly where the flags say native bf16 (this machine's kind varies)."""
    device.cpu_flags.cache_clear()
    try:  # read here, apart from the code under test
        flags = {flag for line in open("/proc/cpuinfo") if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    except OSError:
        flags = set()
    native = bool({"amx_bf16", "avx512_bf16"} & flags)
    if not torch.cuda.is_available():
        assert device.device_and_precision("auto")[1] == ("bf16" if native else "fp32")
