import pytest

from reglab.recipe import Recipe
from reglab.study.plan import ARMS, COMBINATION, Plan, load_study_file, make_plan


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
    ],
)
def test_bad_plans_fail_naming_the_problem(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make_plan(**kwargs)


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
    ],
)
def test_malformed_study_files_fail_clearly(tmp_path, text, match):
    f = tmp_path / "s.toml"
    f.write_text(text)
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=match):
        make_plan(**load_study_file(f))
