"""The backend registry: one guard names the extra of any backend whose package is missing; engines come from it."""

import sys

import pytest

from edgeseg.runtimes import backends, load
from edgeseg.runtimes.backends import engine_choices, engines_for, register_backend, suffix_matcher
from edgeseg.runtimes.errors import EdgesegError


@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry that the test may add to."""
    monkeypatch.setattr(backends, "_REGISTRY", list(backends._REGISTRY))


def needs_a_missing_package(path, device):
    """A loader whose engine package is not installed."""
    import edgeseg_test_absent_engine  # noqa: F401


def test_a_new_backend_gets_the_missing_package_message_from_its_registry_line(registry, tmp_path):
    register_backend("fake", suffix_matcher(".fake"), needs_a_missing_package, ".fake (test)", extra="fakert", hint="from the vendor")
    (tmp_path / "m.fake").write_bytes(b"x")
    with pytest.raises(EdgesegError) as info:
        load(tmp_path / "m.fake")
    assert str(info.value) == (
        f"{tmp_path / 'm.fake'}: the fake backend needs the 'edgeseg_test_absent_engine' package: install edgeseg[fakert] (from the vendor)"
    )


def test_without_an_extra_a_missing_package_is_not_reworded(registry, tmp_path):
    register_backend("fake", suffix_matcher(".fake"), needs_a_missing_package, ".fake (test)")
    (tmp_path / "m.fake").write_bytes(b"x")
    with pytest.raises(ModuleNotFoundError):
        load(tmp_path / "m.fake")


def _folder(name: str):
    def make(tmp_path):
        (tmp_path / name).mkdir()
        return tmp_path / name

    return make


def _file(name: str, size: int = 64):
    def make(tmp_path):
        (tmp_path / name).write_bytes(b"\0" * size)
        return tmp_path / name

    return make


@pytest.mark.parametrize(
    "make, package, backend, extra",
    [
        (_folder("m_openvino_model"), "openvino", "openvino", "openvino"),
        (_folder("m.mlpackage"), "coremltools", "coreml", "coreml"),
        (_folder("m_ncnn_model"), "ncnn", "ncnn", "ncnn"),
        (_file("m.pte"), "executorch", "executorch", "executorch"),
        (_file("m.engine"), "tensorrt", "tensorrt", "tensorrt"),
    ],
    ids=["openvino", "coreml", "ncnn", "executorch", "tensorrt"],
)
def test_each_backend_names_its_extra_when_its_package_is_missing(monkeypatch, tmp_path, make, package, backend, extra):
    for name in [package, *(n for n in sys.modules if n.startswith(f"{package}."))]:  # fails as if not installed, even once imported
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, f"{package}.runtime", None)  # executorch.runtime, whether imported yet or not
    path = make(tmp_path)
    with pytest.raises(EdgesegError, match=rf"^{path}: the {backend} backend needs the '{package}' package: install edgeseg\[{extra}\]"):
        load(path)


def test_tflite_without_any_interpreter_names_ai_edge_litert(monkeypatch):
    from edgeseg.runtimes.backends import tflite

    for package in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter", "tensorflow", "tensorflow.lite"):
        monkeypatch.setitem(sys.modules, package, None)  # also when an earlier test imported them
    with pytest.raises(ModuleNotFoundError) as info:
        tflite._interpreter_class()
    assert info.value.name.split(".")[0] == "ai_edge_litert"


def test_engines_come_from_the_registry(registry):
    assert engines_for(".onnx") == ("onnxruntime", "openvino") and engines_for(".tflite") == ()
    assert engine_choices() == ("onnxruntime", "openvino")
    register_backend("other", suffix_matcher(".xyz"), needs_a_missing_package, ".xyz (test)", engine="otherrt", also_opens=(".onnx",))
    assert engines_for(".onnx") == ("onnxruntime", "openvino", "otherrt")
