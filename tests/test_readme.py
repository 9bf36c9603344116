"""The README stays true: its Python tour runs as written (with shorter trainings), its commands
parse, and its two set-up lines work when copied as they are onto a fresh machine (the project's
tracked files copied into a fresh folder, a fresh virtual environment without system
site-packages, the install commands of the first line exactly as written, then the test command
of the second, on one test file: the whole suite is what CI runs)."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import reglab.optim

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

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
    from reglab.lab.study.storage import StudyStore, sqlite_url

    combo = StudyStore(sqlite_url(tmp_path / "runs" / "s"), "regularization").attrs()["combination"]
    ran = ["baseline", "combination", "dropout", "mixup"] if combo["arms"] else ["baseline", "dropout", "mixup"]
    assert sorted(e["arm"] for e in namespace["board"]) == ran  # a combination of nothing is not run
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
        if words[0] == "tune":
            from reglab.lab.tune import make_space

            techniques = args.techniques.split(",") if args.techniques else None
            make_space(recipe_from_args(args), techniques)  # the techniques and the base recipe fit
    assert sum(c[0] == "tune" for c in commands) >= 4


def test_the_readme_study_file_makes_its_plan(tmp_path):
    from reglab.lab.study import load_study_file, make_plan

    study, sweep = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
    (tmp_path / "study.toml").write_text(study)
    plan = make_plan(**load_study_file(tmp_path / "study.toml"))
    assert plan.name == "mine" and len(plan.seeds) == 5 and plan.base.training.epochs == 50
    assert [a.name for a in plan.arms] == ["baseline", "dropout", "wide-dropout"] and plan.combination
    (tmp_path / "sweep.toml").write_text(sweep)
    curve = make_plan(**load_study_file(tmp_path / "sweep.toml"))
    assert curve.name == "widths" and len(curve.seeds) == 3 and not curve.combination
    assert curve.arm_names == ["baseline", "width-16", "width-64", "width-256", "width-1024", "train-size-400",
                               "train-size-1600"]  # fmt: skip


def quick_start() -> list[str]:
    """The command lines of the README's Quick start block, comments removed."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", text, re.S).group(1)
    return [line.split("   #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_quick_start_says_how_to_install_run_and_test():
    install, tests = quick_start()
    steps = [s.strip() for s in install.split("&&")]
    assert steps[0] == "pip install torch==2.13.0" and steps[1] == 'pip install -e ".[test]"', steps
    assert steps[2].startswith("reglab study") and tests == "python3 -m pytest -q"
    text = (ROOT / "README.md").read_text()
    assert re.search(r"full suite takes (about )?\d+( to \d+)? minutes", text) and '-m "not slow"' in text


class FreshVenv:
    """The README's install line run in a fresh folder and virtual environment, in the background:
    ``conftest.py`` starts it when the session collects the test below (the install takes a
    minute or two of mostly one core, which the rest of the suite leaves idle), and the test
    waits for it. Started, it holds the tracked files' copy, the venv and the install's output."""

    def __init__(self, root: Path) -> None:
        try:
            files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True).stdout
        except OSError:  # no git here: the test says so and skips
            files = b""
        self.root, self.repo, self.env_dir = root, root / "reglab", root / "venv"
        self.tracked = bool(files)
        self.proc: subprocess.Popen | None = None
        if not self.tracked:
            return
        for name in files.decode().split("\0"):
            if name and (ROOT / name).is_file():
                (self.repo / name).parent.mkdir(parents=True, exist_ok=True)
                (self.repo / name).write_bytes((ROOT / name).read_bytes())
        install, _ = quick_start()
        steps = [s.strip() for s in install.split("&&")]
        setup = " && ".join(s for s in steps if s.startswith("pip "))  # `reglab study` itself takes minutes
        # a fresh venv without system site-packages (as venv.EnvBuilder(with_pip=True) makes it)
        script = f"{shlex.quote(sys.executable)} -m venv {shlex.quote(str(self.env_dir))} && {setup}"
        self.log = open(root / "install.log", "w+")  # noqa: SIM115 - read back by result()
        self.proc = subprocess.Popen(["nice", "-n", "5", "bash", "-c", script], cwd=self.repo, env=self.env(),
                                     stdout=self.log, stderr=subprocess.STDOUT, text=True)  # fmt: skip

    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(self.root)}

    def result(self, timeout: float = 900) -> tuple[int, str]:
        """The install's exit status and the tail of its output, once it has finished."""
        code = self.proc.wait(timeout=timeout)
        self.log.seek(0)
        return code, self.log.read()[-4000:]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.mark.slow
def test_the_two_set_up_lines_work_in_a_fresh_venv(fresh_venv):
    if not fresh_venv.tracked:
        pytest.skip("not a git checkout: the tracked files are unknown")
    code, output = fresh_venv.result()
    assert code == 0, output
    env, repo = fresh_venv.env(), fresh_venv.repo
    _, tests = quick_start()
    version = subprocess.run(["reglab", "--version"], cwd=repo, env=env, capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("reglab "), version.stderr
    run = subprocess.run([*shlex.split(tests), "tests/test_architecture.py"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0 and " passed" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
    assert sys.executable not in run.stdout
