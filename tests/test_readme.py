"""The README's Python tour runs as written, with shorter trainings (so that it stays true)."""

import re
from pathlib import Path

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
