import numpy as np
import pytest
from study_helpers import tiny_base

from reglab.lab.recipe import Recipe
from reglab.lab.study.plan import ARMS, COMBINATION, Plan, load_study_file, make_plan


@pytest.mark.slow
def test_default_plan_has_every_arm_three_seeds_and_the_combination():
    plan = make_plan()
    assert plan.arm_names == list(ARMS) and plan.seeds == (0, 1, 2) and plan.combination
    base = Recipe()
    for arm in plan.arms:
        recipe = plan.recipe(arm.name, 2)
        assert recipe.training.seed == 2
        changed = {k for k in arm.changes}
        assert (recipe == base.updated({"training.seed": 2})) == (not changed), arm.name
    assert plan.arm("half-width").recipe.model.width == base.model.resolved_width // 2
    assert plan.arm("dropout").recipe.model.dropout == 0.3


def test_default_arms_fit_the_data_and_the_loss(tmp_path, signals):
    assert make_plan(tiny_base(signals)).left_out == {}, "signals (C, L) with class labels: every arm fits"
    regression = make_plan(Recipe().updated({"data.name": "diabetes", "training.loss": "mse"}))
    assert list(regression.left_out) == ["shift", "label-smoothing", "mixup", "cutmix"]
    assert "shape (10,)" in regression.left_out["shift"] and "class labels" in regression.left_out["mixup"]
    assert regression.arm_names == [a for a in ARMS if a not in regression.left_out]
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "tab.npz", x=rng.normal(size=(60, 5)).astype(np.float32), y=np.arange(60) % 2)
    tabular = make_plan(Recipe().updated({"data.name": "npz", "data.path": str(tmp_path / "tab.npz")}))
    assert list(tabular.left_out) == ["shift", "cutmix"] and "mixup" in tabular.arm_names
    with pytest.raises(ValueError, match="arm 'mixup': mixing.mixup_alpha .* needs class labels"):
        make_plan(regression.base, arms=["baseline", "mixup"])  # named explicitly: refused with the reason
    assert Plan.from_dict(regression.to_dict()) == regression, "what was left out is not part of the study's identity"


def test_plan_round_trips_through_its_dict():
    plan = make_plan(arms=["baseline", "mixup", "half-width"], seeds=[3, 5], name="x")
    again = Plan.from_dict(plan.to_dict())
    assert again == plan and again.recipe("half-width", 5) == plan.recipe("half-width", 5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"arms": ["baseline", "dropuot"]}, "unknown arm 'dropuot'; known arms: baseline"),
        ({"arms": []}, "no arms"),
        ({"arms": ["baseline", "baseline"]}, "distinct"),
        ({"arms": ["dropout", "combination"]}, "needs the baseline"),
        ({"seeds": 0}, "seeds"),
        ({"seeds": [1, 1]}, "distinct"),
        ({"overrides": {"dropout": {"model.dropout": 1.5}}, "arms": ["dropout"]}, "arm 'dropout': model.dropout"),
        ({"overrides": {"mine": {"model.widht": 3}}, "arms": ["mine"]}, "arm 'mine'"),
        ({"overrides": {"dropout": {"model.dropout": 1.5}}, "arms": ["baseline"]}, "arm 'dropout': model.dropout"),
        # an arm's name becomes a folder under OUT/runs: nothing that leaves it, or splits --arms
        ({"overrides": {"../evil": {"model.dropout": 0.1}}, "arms": ["baseline"]}, r"arm name '\.\./evil' must"),
        ({"overrides": {"a,b": {"model.dropout": 0.1}}}, r"arm name 'a,b' must"),
        ({"overrides": {"": {"model.dropout": 0.1}}}, r"arm name '' must"),
        (
            {"overrides": {"baseline": {"model.dropout": 0.1}}},
            r"baseline arm is the base recipe: change it under \[base\]",
        ),
        ({"name": ""}, "name must not be empty"),
        ({"name": "  "}, "name must not be empty"),
        ({"arms": "baseline"}, r"arms must be a list of arm names, such as \['baseline', 'dropout'\], got 'baseline'"),
        ({"arms": ["baseline", 3]}, "arms must be a list of arm names"),
        (
            {"base": {"training": {"epochs": 3}}},
            r"base must be a Recipe \(Recipe\(\), Recipe.load\(path\) or Recipe\(\).updated\(\{...\}\)\), got dict",
        ),
        ({"seeds": [0, -1]}, r"seeds\[1\] must be >= 0, got -1"),
    ],
)
def test_bad_plans_fail_naming_the_problem(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make_plan(**kwargs)


def test_run_study_refuses_what_is_not_a_plan(tmp_path):
    from reglab.lab.study import run_study

    with pytest.raises(
        TypeError, match=r"plan must be a Plan: make_plan\(recipe, arms=\[...\], seeds=3\) builds one; got dict"
    ):
        run_study({"arms": ["baseline"]}, tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_study_file_sets_base_strengths_and_new_arms(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(
        'name = "mine"\nseeds = [0, 4]\n[base.training]\nepochs = 7\n'
        '[arm.dropout]\n"model.dropout" = 0.5\n[arm.wide]\nmodel = { width = 512, dropout = 0.1 }\n'
    )
    plan = make_plan(**load_study_file(f))
    assert plan.name == "mine" and plan.seeds == (0, 4) and plan.base.training.epochs == 7
    assert plan.arm("dropout").recipe.model.dropout == 0.5
    assert plan.arm("wide").recipe.model.width == 512 and plan.arm("wide").recipe.model.dropout == 0.1
    assert plan.arm_names[-1] == COMBINATION and "wide" in plan.arm_names and "mixup" in plan.arm_names


@pytest.mark.parametrize(
    "text, match",
    [
        ("arms = [", "not valid TOML"),
        ("color = 1", "unknown key 'color'"),
        ("arms = 'dropout'", "arms must be a list"),
        ("[base.model]\nwidth = -1", "model.width"),
        ('base_recipe = "none.toml"', "recipe file not found"),
        # each error names the file; a recipe field outside its table names the study file's table
        ("[base]\nepochs = 3", r"s.toml: epochs is a field of \[base.training\]: write it under \[base.training\]"),
        ('seeds = "3"', r"s.toml: seeds must be an integer, got '3'"),
        ("seeds = [0, -2]", r"s.toml: seeds\[1\] must be >= 0, got -2"),
        ("name = 3", r"s.toml: name must be a string"),
        ('arms = ["baseline", 2]', r"s.toml: arms\[1\] must be a string"),
        ("[base.model]\nwidth = -1", r"s.toml: model.width must be >= 0"),
    ],
)
def test_malformed_study_files_fail_clearly(tmp_path, text, match):
    f = tmp_path / "s.toml"
    f.write_text(text)
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=match):
        make_plan(**load_study_file(f))
