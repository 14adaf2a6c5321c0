"""Training precision: bf16 autocast on a CPU when asked (fp32 weights, EMA, loss and checkpoints), the CPU's bf16 read from its flags."""

import pytest
import torch
from click.testing import CliRunner

from edgeseg.cli import main
from edgeseg.data.synth import synthesize
from edgeseg.runtimes import cpus
from edgeseg.train import precision
from edgeseg.train.loader import train_loader
from edgeseg.train.precision import autocast_dtype, autocast_forward, float_outputs
from edgeseg.train.trainer import Trainer


@pytest.mark.parametrize(
    "text, feature",
    [
        ("processor : 0\nflags : fpu sse avx512f avx512_bf16 avx512_vnni\n", "avx512_bf16"),
        ("flags : fpu amx_tile amx_bf16 avx512_bf16\n", "amx_bf16"),
        ("processor : 0\nFeatures : fp asimd sve bf16 i8mm\n", "bf16"),  # Arm (Graviton3)
        ("flags : fpu sse avx2 avx512f avx512_vnni\n", None),  # Cascade Lake: bf16 would be emulated
        ("Features : fp asimd crc32\n", None),  # Cortex-A72 (Raspberry Pi 4)
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, monkeypatch, text, feature):
    info = tmp_path / "cpuinfo"
    info.write_text(text)
    monkeypatch.setattr(cpus, "CPUINFO", info)
    monkeypatch.setattr(cpus.platform, "system", lambda: "Linux")
    assert cpus.native_bf16() == feature


@pytest.mark.parametrize(
    "amp, device, feature, dtype",
    [
        (None, "cpu", "avx512_bf16", None),  # opt-in on a CPU until measured after full trainings
        (None, "cpu", None, None),
        (True, "cpu", "avx512_bf16", torch.bfloat16),
        (False, "cpu", "avx512_bf16", None),
        (True, "cpu", None, torch.bfloat16),  # asked for: emulated
        (None, "cuda", None, torch.float16),
        (False, "cuda", None, None),
    ],
)
def test_autocast_dtype_follows_the_cpu_and_the_flag(monkeypatch, amp, device, feature, dtype):
    monkeypatch.setattr(precision, "native_bf16", lambda: feature)
    chosen, line = autocast_dtype(amp, device)
    assert chosen == dtype
    assert ("emulated" in line or "emulate" in line) == (device == "cpu" and feature is None and amp is not False)


def test_float_outputs_casts_floating_tensors_in_nested_outputs():
    outputs = {"a": (torch.ones(2, dtype=torch.bfloat16), [torch.zeros(1, dtype=torch.float16)]), "b": torch.arange(3)}
    cast = float_outputs(outputs)
    assert cast["a"][0].dtype == cast["a"][1][0].dtype == torch.float32 and cast["b"].dtype == torch.int64
    assert isinstance(cast["a"], tuple) and isinstance(cast["a"][1], list)


def test_autocast_forward_runs_the_float_layers_in_fp32_on_the_bf16_values_and_removes_its_hooks():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4))
    x = torch.randn(3, 8)
    with autocast_forward(net, torch.bfloat16, "cpu", ["1"]):
        hidden = net[0](x)
        out = net(x)
        assert torch.is_autocast_enabled("cpu")  # the hook gave autocast back after the float layer
    assert hidden.dtype == torch.bfloat16 and out.dtype == torch.float32
    torch.testing.assert_close(out, net[1](hidden.float()), rtol=0, atol=0)  # fp32 arithmetic on the bf16 input
    assert not torch.is_autocast_enabled("cpu")
    assert not net[1]._forward_pre_hooks and not net[1]._forward_hooks
    with autocast_forward(net, None, "cpu", ["1"]):
        assert net(x).dtype == torch.float32 and not net[1]._forward_pre_hooks and not torch.is_autocast_enabled("cpu")


def dtypes(outputs) -> set:
    """The dtypes of the tensors in nested tuples, lists and dicts."""
    if isinstance(outputs, torch.Tensor):
        return {outputs.dtype}
    values = outputs.values() if isinstance(outputs, dict) else outputs
    return set().union(*(dtypes(v) for v in values))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("amp"), n_train=4, n_val=2, seed=1, progress=False)


def test_bf16_step_runs_the_forward_in_bf16_and_keeps_weights_loss_ema_and_checkpoint_fp32(tiny, tmp_path):
    trainer = Trainer(dict(data=str(tiny), epochs=1, imgsz=64, batch=4, workers=0, plots=False, val=False, amp=True, project=str(tmp_path)))
    trainer._setup()
    seen = {}
    trainer.net.model[0].register_forward_hook(lambda module, inputs, output: seen.update(conv=output.dtype))  # returns None: output kept
    trainer.net.head.cv2[0][-1].register_forward_hook(lambda module, inputs, output: seen.update(box=output.dtype))
    trainer.net.head.proto.cv3.register_forward_hook(lambda module, inputs, output: seen.update(protos=output.dtype))
    criterion = trainer.criterion

    def recording(preds, batch):
        seen["loss_inputs"] = dtypes(preds)
        return criterion(preds, batch)

    trainer.criterion = recording
    batch = next(iter(train_loader(trainer.train_set, 4, 0, 0, 0)))
    trainer.train_model.train()
    trainer._train_step(batch)
    assert {p.grad.dtype for p in trainer.net.parameters() if p.grad is not None} == {torch.float32}
    trainer._optimizer_step()
    assert trainer.amp_dtype == torch.bfloat16 and seen["conv"] == torch.bfloat16
    assert seen["box"] == seen["protos"] == torch.float32  # the layers the loss reads compute in fp32
    assert seen["loss_inputs"] == {torch.float32}
    assert {p.dtype for p in trainer.net.parameters()} == {torch.float32}
    assert {v.dtype for v in trainer.ema.ema.state_dict().values() if v.is_floating_point()} == {torch.float32}


def test_cli_no_amp_trains_in_fp32_and_says_so(tiny, tmp_path, caplog):
    caplog.set_level("INFO", logger="edgeseg")
    done = CliRunner().invoke(main, ["train", "--data", str(tiny), "--epochs", "1", "--imgsz", "64", "--batch", "4", "--workers", "0",
                                     "--no-plots", "--no-val", "--no-amp", "--project", str(tmp_path), "--name", "fp32"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "AMP off (--no-amp): training in fp32" in caplog.text
    ckpt = torch.load(tmp_path / "fp32" / "weights" / "last.pt", weights_only=True)
    assert {v.dtype for v in ckpt["state_dict"].values() if v.is_floating_point()} == {torch.float32}
    bad = CliRunner().invoke(main, ["train", "--data", str(tiny), "--amp", "maybe"])
    assert bad.exit_code != 0
