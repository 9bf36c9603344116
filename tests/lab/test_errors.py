"""Bad input is one line and exit status 2; an internal error keeps its traceback and exits 1."""

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
    ],
    ids=["recipe-folder", "recipe-not-utf8", "npz-not-a-zip", "csv-not-utf8"],
)
def test_a_bad_file_is_one_line_naming_it(tmp_path, capsys, make, flag, words):
    path = tmp_path / "given.toml"
    make(path)
    target = path if flag == "--recipe" else next(p for p in tmp_path.iterdir() if p.suffix in (".npz", ".csv"))
    assert main(["train", flag, str(target), "--out", str(tmp_path / "o")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and str(target) in lines[0], lines


def test_a_broken_study_json_is_one_line(tmp_path, capsys):
    (tmp_path / "study.json").write_text("{not json")
    assert main(["report", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "study.json is damaged" in lines[0] and "--storage" in lines[0], lines
