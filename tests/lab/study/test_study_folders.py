"""A study folder holds one study: each study has its own default folder, another study is never
run into it, and its ``study.json`` names the folder's own database by a relative path, so a
moved or copied folder reports its own trials."""

import json
import shutil

import pytest

from reglab.lab.cli import main
from reglab.lab.study import rebuild_report

TINY = ["--dataset", "digits", "--epochs", "2", "--width", "16", "--seeds", "1", "--quiet"]


def _title(folder):
    text = (folder / "report.html").read_text()
    return text[text.index("<h1>") + 4 : text.index("</h1>")]


@pytest.mark.slow
def test_the_readme_studies_land_in_their_own_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.toml").write_text('name = "mine"\nseeds = 1\narms = ["baseline", "dropout"]\n')
    assert main(["study", "--arms", "baseline,l2", *TINY]) == 0  # `reglab study`: the built-in study
    assert main(["study", "--config", "study.toml", *TINY]) == 0  # the README's study file
    capsys.readouterr()
    default, mine = tmp_path / "runs" / "regularization", tmp_path / "runs" / "mine"
    assert _title(default) == "reglab study: regularization" and _title(mine) == "reglab study: mine"
    assert {r["arm"] for r in json.loads((default / "results.json").read_text())} == {"baseline", "l2"}
    assert {r["arm"] for r in json.loads((mine / "results.json").read_text())} == {"baseline", "dropout"}


@pytest.mark.slow
def test_another_study_is_never_run_into_a_study_folder(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["study", "--arms", "baseline,l2", *TINY, "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["study", "--arms", "baseline,dropout", *TINY, "--name", "other", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds the study 'regularization'; this study is 'other'" in err and "runs/other" in err, err
    other_db = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert main(["study", "--arms", "baseline,l2", *TINY, "--storage", other_db, "--out", str(out)]) == 2
    assert "pass --storage" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


@pytest.fixture
def study_folder(tmp_path, capsys):
    out = tmp_path / "original"
    assert main(["study", "--arms", "baseline,l2", *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    return out


def test_study_json_names_the_folders_own_database_relatively(study_folder, tmp_path):
    assert json.loads((study_folder / "study.json").read_text())["storage"] == "study.db"
    moved = tmp_path / "moved"
    study_folder.rename(moved)
    assert [e["arm"] for e in rebuild_report(moved)] and (moved / "report.html").exists()


def test_a_copied_folder_reports_its_own_copy(study_folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(study_folder, copy)
    (study_folder / "study.db").unlink()  # were the copy reading the original's database, this would show
    assert len(rebuild_report(copy)) == 2


def test_a_folder_pointing_at_another_folders_database_is_refused(study_folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(study_folder, copy)
    pointer = json.loads((copy / "study.json").read_text())  # as older versions wrote it: an absolute path
    pointer["storage"] = f"sqlite:///{(study_folder / 'study.db').resolve()}"
    (copy / "study.json").write_text(json.dumps(pointer))
    with pytest.raises(Exception, match="points to the database of another study folder") as caught:
        rebuild_report(copy)
    assert str(study_folder) in str(caught.value)


def test_the_report_is_written_by_one_process_at_a_time(study_folder, monkeypatch):
    import reglab.lab.study.report as report
    from reglab._files import folder_lock
    from reglab.errors import FolderBusyError

    monkeypatch.setattr(report, "REPORT_WAIT", 0.3)  # a study waits up to 10 minutes; the test, not that long
    with folder_lock(study_folder):  # another worker writing this folder's report
        with pytest.raises(FolderBusyError, match="is in use by another reglab"):
            rebuild_report(study_folder)
    assert len(rebuild_report(study_folder)) == 2
