"""The flat namespace: ``reglab.AdamW`` is ``reglab.optim.AdamW``, and no name is ambiguous."""

import reglab
from reglab import augment, optim, regularize, train

FAMILIES = {"optim": optim, "augment": augment, "regularize": regularize, "train": train}


def test_every_exported_name_is_the_object_of_its_family():
    homes = {}
    for name in set(reglab.__all__) - {"fit"}:  # reglab.fit also takes a Recipe
        owners = {fam: getattr(mod, name) for fam, mod in FAMILIES.items() if name in getattr(mod, "__all__", ())}
        obj = getattr(reglab, name)
        assert all(o is obj for o in owners.values()), f"reglab.{name} is not what {sorted(owners)} export"
        homes[name] = sorted(owners)
    assert homes["AdamW"] == ["optim"] and homes["mixup"] == ["augment"] and homes["Penalty"] == ["regularize"]
    assert homes["EarlyStopping"] == ["train"]
    assert len(set(reglab.__all__)) == len(reglab.__all__)


def test_names_two_families_share_stay_in_the_families():
    shared = set(optim.__all__) & set(augment.__all__)
    assert "scale" in shared and optim.scale is not augment.scale
    assert not shared & set(reglab.__all__)


def test_star_import_gives_the_techniques():
    ns = {}
    exec("from reglab import *", ns)
    assert {
        "SGD",
        "Adam",
        "AdamW",
        "chain",
        "mixup",
        "cutmix",
        "cutout",
        "Penalty",
        "InputNoise",
        "EarlyStopping",
        "fit",
    } <= set(ns)
    assert "Any" not in ns and "annotations" not in ns


def test_fit_says_what_it_takes():
    import pytest
    import torch

    with pytest.raises(
        TypeError,
        match=r"fit takes a Recipe, or a model with data and an optimizer; got dict \(a dict of changes goes through "
        r"Recipe\(\).updated",
    ):
        reglab.fit({"training.epochs": 3})
    with pytest.raises(TypeError, match="needs data and an optimizer"):
        reglab.fit(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="fit\\(recipe\\) takes no other arguments"):
        reglab.fit(reglab.Recipe(), epochs=3)
