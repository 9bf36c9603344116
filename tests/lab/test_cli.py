import json
import subprocess
import sys

import pytest

from reglab.lab.cli import main
from reglab.lab.recipe import Recipe


def test_train_writes_the_promised_files(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            "digits",
            "--width",
            "32",
            "--epochs",
            "3",
            "--batch-size",
            "64",
            "--seed",
            "1",
            "--early-stopping",
            "--patience",
            "2",
            "--set",
            "model.dropout=0.1",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert {"epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "lr"} <= set(history[0])
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "best_epoch",
        "stopped_epoch",
        "stop_reason",
        "test_loss",
        "test_acc",
        "diagnosis",
        "recipe",
        "versions",
    ):
        assert key in summary
    assert summary["diagnosis"]["verdict"] in ("underfitting", "good fit", "overfitting")
    assert set(summary["versions"]) == {"python", "torch", "reglab"}
    recipe = Recipe.load(out / "recipe.toml")
    assert (recipe.data.name, recipe.model.width, recipe.model.dropout, recipe.training.seed) == ("digits", 32, 0.1, 1)
    assert recipe.early_stopping.enabled and recipe.early_stopping.patience == 2
    assert (out / "recipe.toml").read_text().startswith("# recipe as run by reglab; python")
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "verdict" in printed and "test accuracy" in printed


@pytest.mark.slow
def test_a_diverging_run_is_reported_as_diverged_with_its_files(tmp_path, capsys):
    """A learning rate far too high: the loss becomes NaN, the loop stops, and the run still
    ends normally with its history, summary, curves and the verdict "diverged" (it ended with
    "cannot diagnose" and no history.json)."""
    out = tmp_path / "hot"
    args = [
        "train",
        "--dataset",
        "digits",
        "--width",
        "16",
        "--optimizer",
        "sgd",
        "--lr",
        "1e6",
        "--epochs",
        "5",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["diagnosis"]["verdict"] == "diverged" and summary["stopped_epoch"] < 5
    assert summary["stop_reason"].startswith("non-finite train_loss")
    history = json.loads((out / "history.json").read_text())
    assert len(history) == summary["stopped_epoch"] and history[-1]["train_loss"] is None  # NaN is null in strict JSON
    assert (out / "curves.png").exists()
    printed = capsys.readouterr().out
    assert "diverged: the training loss became nan" in printed and "None" not in printed


def test_recipe_file_and_flag_override(tmp_path):
    Recipe.from_dict({"data": {"name": "digits"}, "model": {"width": 16}, "training": {"epochs": 1}}).save(
        tmp_path / "r.toml"
    )
    assert (
        main(["train", "--recipe", str(tmp_path / "r.toml"), "--epochs", "2", "--out", str(tmp_path / "o"), "--quiet"])
        == 0
    )
    recipe = Recipe.load(tmp_path / "o" / "recipe.toml")
    assert (recipe.model.width, recipe.training.epochs) == (16, 2)


def test_train_on_a_csv_with_class_names(tmp_path):
    lines = ["x1,x2,kind"] + [f"{i % 7 / 7:.3f},{(i * 3) % 5 / 5:.3f},{('ham', 'spam')[i % 2]}" for i in range(60)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    args = ["train", "--dataset", str(tmp_path / "d.csv"), "--set", 'data.label_column="kind"', "--epochs", "1"]
    assert main([*args, "--width", "8", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["classes"] == ["ham", "spam"]
        and "classes" not in json.loads((tmp_path / "run" / "history.json").read_text())[0]
    )


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--epochs", "-3"], ["training.epochs", "-3"]),
        (["--epochs", "three"], ["--epochs", "three"]),
        (["--lr", "nan"], ["optimizer.lr", "nan"]),
        (["--dropout", "1.5"], ["model.dropout", "1.5"]),
        (["--model", "transformer"], ["--model", "transformer"]),
        (["--model", "gru", "--norm", "batch"], ["model.norm", "gru"]),
        (["--threads", "0"], ["--threads", "0"]),
        (["--dataset", "digits", "--model", "rnn", "--depth", "1"], ["reads signals", "(1, 8, 8)"]),
        (["--optimizer", "lion"], ["optimizer.name", "lion"]),
        (["--dataset", "cifar10"], ["data.name", "cifar10"]),
        (["--dataset", "missing.npz"], ["missing.npz"]),
        (["--set", "model.widht=3"], ["widht"]),
        (["--set", "nonsense"], ["KEY=VALUE"]),
        (["--recipe", "nowhere.toml"], ["nowhere.toml"]),
        (["--norm", "batch", "--batch-size", "1"], ["batch norm"]),
    ],
)
def test_bad_input_is_one_line_not_a_traceback(tmp_path, capsys, argv, words):
    assert main(["train", "--out", str(tmp_path / "o"), *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reglab: error:"), lines
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "o").exists(), "a refused run must not leave files behind"


@pytest.mark.slow
def test_console_command_exits_2_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "reglab.lab.cli", "train", "--epochs", "-3", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "reglab: error: training.epochs must be >= 1, got -3"


@pytest.mark.slow
def test_existing_output_is_not_overwritten(tmp_path, capsys):
    args = ["train", "--dataset", "digits", "--width", "8", "--out", str(tmp_path / "o"), "--quiet"]
    assert main(args + ["--epochs", "1"]) == 0
    before = (tmp_path / "o" / "history.json").read_text()
    assert main(args + ["--epochs", "2"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (tmp_path / "o" / "history.json").read_text() == before


@pytest.mark.slow
def test_resume_with_nothing_to_resume_says_so_and_starts(tmp_path, capsys):
    out = tmp_path / "typo"
    assert (
        main(
            ["train", "--dataset", "digits", "--width", "8", "--epochs", "1", "--out", str(out), "--quiet", "--resume"]
        )
        == 0
    )
    assert f"nothing to resume in {out}" in capsys.readouterr().err
    assert (out / "checkpoint.pt").exists()
    assert (
        main(
            ["train", "--dataset", "digits", "--width", "8", "--epochs", "1", "--out", str(out), "--quiet", "--resume"]
        )
        == 0
    )
    assert "nothing to resume" not in capsys.readouterr().err  # the second time there is a finished run to report


def test_optimizer_schedule_and_clipping_flags(tmp_path):
    out = tmp_path / "o"
    args = [
        "train",
        "--dataset",
        "digits",
        "--width",
        "16",
        "--epochs",
        "4",
        "--optimizer",
        "sgd",
        "--lr",
        "0.1",
        "--momentum",
        "0.9",
        "--weight-decay",
        "1e-3",
        "--decoupled",
        "--clip-norm",
        "1.0",
        "--schedule",
        "cosine",
        "--warmup",
        "1",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    recipe = Recipe.load(out / "recipe.toml")
    assert recipe.optimizer.options == {"momentum": 0.9, "weight_decay": 1e-3, "decoupled": True, "clip_norm": 1.0}
    assert (recipe.schedule.name, recipe.schedule.warmup_epochs) == ("cosine", 1)
    lrs = [r["lr"] for r in json.loads((out / "history.json").read_text())]
    assert lrs[0] == pytest.approx(0.01) and lrs[1] == pytest.approx(0.1) and lrs[3] < lrs[2] < lrs[1]


@pytest.mark.slow
def test_regularization_flags_reach_the_recipe(tmp_path):
    out = tmp_path / "o"
    args = [
        "train",
        "--dataset",
        "digits",
        "--width",
        "16",
        "--epochs",
        "2",
        "--l2",
        "1e-3",
        "--l1-proximal",
        "0.01",
        "--input-noise",
        "0.1",
        "--weight-noise",
        "0.01",
        "--shift",
        "1",
        "--flip",
        "0.5",
        "--rotate",
        "10",
        "--cutout",
        "2",
        "--label-smoothing",
        "0.1",
        "--mixup",
        "0.2",
        "--cutmix",
        "1.0",
        "--train-size",
        "300",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    r = Recipe.load(out / "recipe.toml")
    assert (r.regularization.l2, r.regularization.input_noise, r.regularization.weight_noise) == (1e-3, 0.1, 0.01)
    assert (r.augment.shift, r.augment.flip, r.augment.rotate, r.augment.cutout) == (1, 0.5, 10.0, 2)
    assert (r.mixing.label_smoothing, r.mixing.mixup_alpha, r.mixing.cutmix_alpha) == (0.1, 0.2, 1.0)
    assert r.optimizer.options["l1_proximal"] == 0.01 and r.data.train_size == 300
    history = json.loads((out / "history.json").read_text())
    assert {"zero_frac", "weight_l2", "first_zero_frac"} <= set(history[-1])


def test_augmenting_tabular_data_is_refused_before_training(tmp_path, capsys):
    import numpy as np

    np.savez(tmp_path / "t.npz", x=np.random.default_rng(0).normal(size=(50, 4)), y=np.arange(50) % 2)
    assert (
        main(["train", "--dataset", str(tmp_path / "t.npz"), "--shift", "2", "--out", str(tmp_path / "o"), "--quiet"])
        == 2
    )
    assert "augmentations need signals" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--shift", "8"], "augment.shift = 8 must be smaller than the samples' side (8x8)"),
        (["--cutout", "20"], "augment.cutout = 20 is larger than the samples (8x8)"),
    ],
    ids=["shift", "cutout"],
)
def test_augmentations_larger_than_the_samples_are_refused_before_training(tmp_path, capsys, flags, words):
    """On digits (8x8) a shift of 8 moved whole images out and a 20-pixel Cutout erased every
    image whole: the model trained on blanks."""
    assert main(["train", "--dataset", "digits", *flags, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_train_a_regression(tmp_path, capsys):
    out = tmp_path / "reg"
    assert (
        main(
            [
                "train",
                "--dataset",
                "diabetes",
                "--width",
                "32",
                "--epochs",
                "5",
                "--batch-size",
                "32",
                "--early-stopping",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )  # diabetes implies --loss mse
    recipe = Recipe.load(out / "recipe.toml")
    assert (recipe.data.name, recipe.training.loss) == ("diabetes", "mse")
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 5 and "train_acc" not in history[0] and "valid_acc" not in history[0]
    summary = json.loads((out / "summary.json").read_text())
    assert "test_acc" not in summary and summary["test_loss"] > 0
    assert summary["chance_loss"] == pytest.approx(1.0, abs=0.15)  # standardized targets: variance ~1
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "test loss" in printed and "test accuracy" not in printed
    assert (
        main(
            [
                "train",
                "--dataset",
                "diabetes",
                "--loss",
                "mae",
                "--width",
                "8",
                "--epochs",
                "1",
                "--out",
                str(tmp_path / "mae"),
                "--quiet",
            ]
        )
        == 0
    )
    assert Recipe.load(tmp_path / "mae" / "recipe.toml").training.loss == "mae"


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train", "--loss", "mse"], ["'mnist1d' has class labels"]),
        (["train", "--dataset", "diabetes", "--mixup", "0.2"], ["mixing.mixup_alpha", "class labels"]),
        (
            ["study", "--dataset", "diabetes", "--arms", "baseline,label-smoothing"],
            ["arm 'label-smoothing'", "needs class labels"],
        ),
        (["study", "--loss", "mae"], ["'mnist1d' has class labels"]),
    ],
)
def test_regression_mistakes_are_one_line(tmp_path, capsys, argv, words):
    assert main([*argv, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), lines
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_grad_norms_and_sharpness_flags(tmp_path, capsys):
    out = tmp_path / "s"
    assert (
        main(
            [
                "train",
                "--dataset",
                "digits",
                "--width",
                "16",
                "--epochs",
                "2",
                "--sharpness",
                "1e-3",
                "--grad-norms",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    recipe = Recipe.load(out / "recipe.toml")
    assert recipe.training.sharpness == 1e-3 and recipe.training.grad_norms
    history = json.loads((out / "history.json").read_text())
    assert [k for k in history[-1] if k.startswith("grad_norm_")] == ["grad_norm_1", "grad_norm_2", "grad_norm_3"]
    assert all(r["grad_norm_1"] > 0 for r in history) and (out / "curves.png").exists()
    assert summary["sharpness"] > 0 and "sharpness" in capsys.readouterr().out
    assert main(["train", "--sharpness", "-1", "--out", str(tmp_path / "bad")]) == 2
    assert "training.sharpness" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "study"])
@pytest.mark.parametrize("where", ["file", "under-file"])
def test_an_output_folder_that_is_a_file_is_refused_before_training(tmp_path, capsys, command, where):
    (tmp_path / "data.npz").write_bytes(b"not a folder")
    out = tmp_path / "data.npz" if where == "file" else tmp_path / "data.npz" / "run"
    extra = ["--arms", "baseline", "--seeds", "1"] if command == "study" else []
    assert main([command, "--dataset", "digits", "--epochs", "1", "--out", str(out), "--quiet", *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"reglab: error: --out {out}: {tmp_path / 'data.npz'} is a file, not a folder"], lines
    assert (tmp_path / "data.npz").read_bytes() == b"not a folder"


@pytest.mark.slow
def test_warnings_are_one_line_in_the_command_style(tmp_path, monkeypatch, capsys):
    """A warning printed Python's way (file, line, category and source line); the command
    prints ``reglab: warning: ...`` instead (here: MNIST-1D cannot be cached)."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("REGLAB_CACHE", str(blocker / "cache"))
    assert main(["train", "--epochs", "1", "--width", "8", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "reglab: warning: cannot cache MNIST-1D in" in err and "REGLAB_CACHE" in err
    assert "UserWarning" not in err and "data.py" not in err


def test_reglab_alone_prints_the_usage_and_version_prints_the_version(capsys):
    import reglab

    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: reglab") and "train" in out and "study" in out and "report" in out
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"reglab {reglab.__version__}"


def test_patience_alone_implies_early_stopping(tmp_path):
    from reglab.lab.cli import build_parser, recipe_from_args

    recipe = recipe_from_args(build_parser().parse_args(["train", "--patience", "5"]))
    assert recipe.early_stopping.enabled and recipe.early_stopping.patience == 5


def test_a_learning_rate_of_zero_is_refused(tmp_path, capsys):
    assert main(["train", "--lr", "0", "--out", str(tmp_path / "o")]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("reglab: error: optimizer.lr must be > 0, got 0.0") and "never change" in line


@pytest.mark.parametrize("command, advice", [("train", "with --resume"), ("study", "finished trials are kept")])
def test_an_interrupt_says_how_to_continue_this_command(tmp_path, capsys, monkeypatch, command, advice):
    import reglab.lab.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, f"cmd_{command}", interrupted)
    assert main([command, "--out", str(tmp_path / "o")]) == 130
    err = capsys.readouterr().err
    assert err.startswith("\n") and advice in err, "a line of its own, below any progress bar"
    assert ("reglab train" in err) is False


def test_the_files_line_names_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["train", "--dataset", "digits", "--width", "8", "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("files:"))
    assert "checkpoint.pt" in line and (out / "checkpoint.pt").exists()


@pytest.mark.parametrize(
    "argv, said",
    [
        (["train", "--bogus"], "reglab: error: unrecognized arguments: --bogus (see reglab train --help)"),
        (["study", "--seeds", "x"], "reglab: error: argument --seeds: invalid int value: 'x' (see reglab study"),
        (
            ["fly"],
            "reglab: error: argument command: invalid choice: 'fly' (choose from 'train', 'study', 'tune', 'report')",
        ),
    ],
)
def test_a_mistyped_command_line_is_said_once(capsys, argv, said):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(said) and err[0].count("reglab") <= 2, err


def test_proximal_l1_sparsity_is_in_the_summary_and_the_terminal(tmp_path, capsys):
    out = tmp_path / "o"
    args = ["train", "--dataset", "digits", "--width", "16", "--epochs", "3", "--quiet", "--out", str(out)]
    assert main([*args, "--l1-proximal", "5", "--lr", "0.01"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    history = json.loads((out / "history.json").read_text())
    assert summary["zero_frac"] == pytest.approx(history[-1]["zero_frac"]) and summary["zero_frac"] > 0.5
    assert summary["first_zero_frac"] == pytest.approx(history[-1]["first_zero_frac"])
    said = capsys.readouterr().out
    assert f"{summary['zero_frac']:.1%} of all (first layer {summary['first_zero_frac']:.1%})" in said
    assert main([*args[:-1], str(tmp_path / "dense")]) == 0
    assert "zero weights" not in capsys.readouterr().out  # nothing to say without exact zeros
