"""Bad input is one line and exit status 2; an internal error keeps its traceback and exits 1."""

import json

import numpy as np
import pytest
import torch

import reglab
from reglab.errors import InputError, MissingFileError, ReglabError, ReglabTypeError, note
from reglab.lab.cli import main


def test_the_family_is_the_built_in_exceptions_too():
    assert issubclass(ReglabError, ValueError) and issubclass(ReglabTypeError, TypeError)
    assert issubclass(MissingFileError, FileNotFoundError)
    for cls in (ReglabError, ReglabTypeError, MissingFileError):
        assert issubclass(cls, InputError)
    e = ReglabError("model.width must be >= 0, got -1").within("arm 'half'").within("study file s.toml")
    assert str(e) == "study file s.toml: arm 'half': model.width must be >= 0, got -1"


def test_context_on_an_internal_error_is_a_note_that_keeps_its_type():
    e = ZeroDivisionError("division by zero")
    note(e, "in trial baseline seed 0")
    assert str(e) == "division by zero" and getattr(e, "__notes__", ["in trial baseline seed 0"]) == [
        "in trial baseline seed 0"
    ]


def test_a_bad_value_exits_2_with_one_line(tmp_path, capsys):
    assert main(["train", "--width", "-4", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["reglab: error: model.width must be >= 0, got -4"]


def test_an_internal_error_exits_1_with_its_traceback(tmp_path, capsys, monkeypatch):
    def broken_builder(input_shape, num_outputs, config):
        return 1 / 0

    reglab.register_model("broken", broken_builder)
    try:
        code = main(["train", "--dataset", "digits", "--model", "broken", "--epochs", "1", "--quiet",
                     "--out", str(tmp_path / "o")])  # fmt: skip
    finally:
        reglab.models.MODEL_KINDS.unregister("broken")
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError: division by zero" in err
    assert "in broken_builder" in err, "the traceback reaches the code that failed"
    assert err.strip().splitlines()[-1].startswith("reglab: internal error (ZeroDivisionError)")


def test_a_user_module_that_cannot_be_used_is_one_line(tmp_path, capsys):
    out = str(tmp_path / "o")
    cases = [
        ("nowhere_module:build", "cannot import module 'nowhere_module'"),
        ("custom_parts:missing", "module 'custom_parts' has no attribute 'missing'"),
        ("custom_parts:NOT_A_FUNCTION", "custom_parts:NOT_A_FUNCTION is not a function"),
        ("custom_parts:two_arguments", "must take 3 positional arguments (input_shape, num_outputs, config)"),
    ]
    for kind, words in cases:
        assert main(["train", "--model", kind, "--out", out]) == 2, kind
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], lines


def test_registering_twice_needs_replace():
    from reglab.models import MODEL_KINDS

    reglab.register_model("twice", lambda shape, n, config: torch.nn.Flatten())
    try:
        with pytest.raises(ValueError, match="model kind 'twice' is already registered; pass replace=True"):
            reglab.register_model("twice", lambda shape, n, config: torch.nn.Flatten())
        reglab.register_model("twice", lambda shape, n, config: torch.nn.Identity(), replace=True)
        assert isinstance(MODEL_KINDS["twice"].build((1,), 2, None), torch.nn.Identity)
        with pytest.raises(ValueError, match="name must be a non-empty string without ':'"):
            reglab.register_model("a:b", lambda shape, n, config: None)
    finally:
        MODEL_KINDS.unregister("twice")


@pytest.mark.parametrize(
    "make, flag, words",
    [
        (lambda p: p.mkdir(), "--recipe", "is a folder; give the TOML file in it"),
        (lambda p: p.write_bytes(b"[model]\nwidth = 8 # \xff\xfe\n"), "--recipe", "is not UTF-8 text"),
        (lambda p: p.with_suffix(".npz").write_text("not a zip"), "--dataset", "cannot be read as a NumPy .npz"),
        (lambda p: p.with_suffix(".csv").write_bytes(b"a,label\n1,\xff\n"), "--dataset", "cannot be read as UTF-8"),
        (lambda p: _npz(p, x=np.ones((1, 5), np.float32), y=np.array([0])), "--dataset", "1 sample cannot be split"),
        (lambda p: _npz(p, x=np.array([["a", "b"]] * 40), y=np.arange(40) % 2), "--dataset", "x holds strings"),
        (
            lambda p: _npz(p, x=np.array([[1, None]] * 40, dtype=object), y=np.arange(40) % 2),
            "--dataset",
            "x holds Python objects",
        ),  # fmt: skip
        (
            lambda p: p.with_suffix(".csv").write_text("a,b,label\n1,2,0\n3,,1\n" + "1,1,0\n" * 30),
            "--dataset",
            "column 'b', line 3 is empty",
        ),  # fmt: skip
        (
            lambda p: _npz(p, x=np.zeros((200, 4), np.float32), y=np.array([0, 1, 2] * 66 + [7, 0])),
            "--dataset",
            "labels 3, 4, 5, 6 of 0..7 have no training samples",
        ),  # fmt: skip
    ],
    ids=[
        "recipe-folder",
        "recipe-not-utf8",
        "npz-not-a-zip",
        "csv-not-utf8",
        "npz-one-sample",
        "npz-strings",
        "npz-objects",
        "csv-empty-cell",
        "classes-without-samples",
    ],  # fmt: skip
)
def test_a_bad_file_is_one_line_naming_it(tmp_path, capsys, make, flag, words):
    path = tmp_path / "given.toml"
    make(path)
    target = path if flag == "--recipe" else next(p for p in tmp_path.iterdir() if p.suffix in (".npz", ".csv"))
    assert main(["train", flag, str(target), "--out", str(tmp_path / "o")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and str(target) in lines[0], lines


def _npz(path, **arrays):
    np.savez(path.with_suffix(".npz"), **arrays)


def test_classes_without_samples_train_once_confirmed_and_unscaled_inputs_warn(tmp_path, capsys):
    gaps = tmp_path / "gaps.npz"
    rng = np.random.default_rng(0)
    np.savez(gaps, x=rng.standard_normal((200, 4)).astype(np.float32), y=np.array([0, 1, 2] * 66 + [7, 0]))
    args = ["train", "--dataset", str(gaps), "--epochs", "1", "--width", "8", "--quiet"]
    assert main([*args, "--classes", "8", "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert (
        summary["recipe"]["data"]["num_classes"] == 8 and summary["num_parameters"] == 4 * 8 + 8 + 8 * 8 + 8 + 8 * 8 + 8
    )
    assert main([*args, "--classes", "5", "--out", str(tmp_path / "o5")]) == 2
    assert "labels go up to 7, but data.num_classes = 5" in capsys.readouterr().err
    huge = tmp_path / "huge.npz"
    np.savez(huge, x=rng.standard_normal((200, 4)).astype(np.float32) * 1e30, y=np.arange(200) % 2)
    assert main(["train", "--dataset", str(huge), "--epochs", "1", "--width", "8", "--quiet", "--out",
                 str(tmp_path / "h")]) == 0  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reglab: warning: ") and "above 10000" in err[0], err
    assert "standardize" in err[0] and str(huge) in err[0]


def test_a_broken_study_json_is_one_line(tmp_path, capsys):
    (tmp_path / "study.json").write_text("{not json")
    assert main(["report", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "study.json is damaged" in lines[0] and "--storage" in lines[0], lines
