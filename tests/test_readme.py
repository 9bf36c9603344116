"""The README's Python tour runs as written, with shorter trainings (so that it stays true)."""

import re
import shlex
from pathlib import Path

import pytest

import reglab.optim

README = Path(__file__).resolve().parents[1] / "README.md"

# Shorter runs: each replacement must find its text, so a README edit cannot silently skip one.
SHORTER = [
    ('"training.epochs": 30', '"training.epochs": 2'),
    ("epochs=100, batch_size=100, callbacks=[stopper]", "epochs=2, batch_size=100, callbacks=[stopper]"),
    ("epochs=100, batch_size=100, loss_terms", "epochs=2, batch_size=100, loss_terms"),
    ("make_plan(reglab.Recipe(), arms", 'make_plan(reglab.Recipe().updated({"training.epochs": 2}), arms'),
    ("seeds=3)", "seeds=2)"),
]
# Names a snippet leaves to the reader: a batch to augment.
GIVEN = "x, y = data.x_train[:64], data.y_train[:64]\n"


@pytest.mark.slow
def test_the_readme_python_tour_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 4, "the tour: library, optimizers, regularization, studies"
    code = "\n".join(blocks)
    for old, new in SHORTER:
        assert code.count(old) == 1, f"README changed: {old!r} is not in the tour once"
        code = code.replace(old, new)
    code = code.replace("from reglab.regularize import", GIVEN + "from reglab.regularize import", 1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert isinstance(namespace["opt"], reglab.optim.Optimizer)
    assert namespace["soft"].shape == (64, 10) and len(namespace["history"]) == 2
    assert sorted(e["arm"] for e in namespace["board"]) == ["baseline", "combination", "dropout", "mixup"]
    assert (tmp_path / "runs" / "s" / "report.html").exists()
    printed = capsys.readouterr().out
    assert namespace["result"].diagnosis.explanation in printed


def _commands() -> list[list[str]]:
    """Every ``reglab ...`` command of the README's bash blocks, comments and continuations removed."""
    text = "\n".join(re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)).replace("\\\n", " ")
    lines = (shlex.split(line, comments=True) for line in text.splitlines())
    commands = []
    for words in lines:
        while "reglab" in words:  # `pip install ... && reglab study --workers 2`
            words = words[words.index("reglab") + 1 :]
            end = words.index("&&") if "&&" in words else len(words)
            commands.append(words[:end])
            words = words[end:]
    return commands


def test_the_readme_commands_parse_and_their_recipes_validate():
    from reglab.lab.cli import build_parser, recipe_from_args

    commands = _commands()
    assert sum(c[0] == "train" for c in commands) >= 15 and sum(c[0] == "study" for c in commands) >= 6
    parser = build_parser()
    for words in commands:
        args = parser.parse_args(words)
        if words[0] == "train" and "--recipe" not in words:
            recipe_from_args(args)  # the flags make a valid recipe (data files are not read here)


def test_the_readme_study_file_makes_its_plan(tmp_path):
    from reglab.lab.study import load_study_file, make_plan

    (block,) = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
    (tmp_path / "study.toml").write_text(block)
    plan = make_plan(**load_study_file(tmp_path / "study.toml"))
    assert plan.name == "mine" and len(plan.seeds) == 5 and plan.base.training.epochs == 50
    assert [a.name for a in plan.arms] == ["baseline", "dropout", "wide-dropout"] and plan.combination
