"""Data YAMLs: values of the wrong type are one-line errors; image lists are capped and checked."""

import re

import pytest

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.io.data_config import img_paths, load_data_config

from bad_files import GIB3, encoded, sparse, write


@pytest.mark.parametrize(
    "text, problem",
    [
        ("path: [1, 2]\ntrain: a\nval: a\nnames: [x]\n", "'path' must be a folder path"),
        ("path: ~nosuchuser_edgeseg\ntrain: a\nval: a\nnames: [x]\n", "its home folder is unknown"),
        ("train: {a: 1}\nval: a\nnames: [x]\n", "'train' must be a path or a list of paths"),
        ("train: a\nval: a\nnames: [[1, 2]]\n", "'names' values must be plain names"),
        ("train: a\nval: a\nnames: {99999999999999999999999: x}\n", "'names' ids must be 0..0"),
        ("train: a\nval: a\nnames: [x]\nnc: 1.5\n", "'nc' must be an integer"),
        ("train: \"a\\0b\"\nval: a\nnames: [x]\n", "contains a NUL character"),
    ],
)
def test_data_yaml_values_of_the_wrong_type_are_one_line(tmp_path, text, problem):
    write(tmp_path / "a" / "x.png", encoded(".png"))
    with pytest.raises(EdgesegError, match=re.escape(problem)) as err:
        load_data_config(write(tmp_path / "data.yaml", text))
    assert "data.yaml" in str(err.value) and "\n" not in str(err.value)


def test_image_lists_are_capped_and_checked(tmp_path):
    sparse(tmp_path / "big.txt", b"a.png\n", GIB3)
    with pytest.raises(EdgesegError, match="big.txt: image list refused: 3,221,225,472 bytes"):
        img_paths("big.txt", tmp_path)
    write(tmp_path / "nul.txt", "a.png\nb\0.png\n")
    with pytest.raises(EdgesegError, match="nul.txt: line 2"):
        img_paths("nul.txt", tmp_path)
