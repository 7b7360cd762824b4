"""Experiment identity: what changed between two identities, in words, and keys added in later versions.
(What a changed identity does to the stages: test_staleness.py.)"""
from pipeline.lib.config import load_config
from pipeline.lib.identity import changes
from tests.tiny_run import DEMO, name


def test_changes_name_keys_and_values():
    old = {"split": "a", "config": {"train": {"lr": 0.001, "epochs": 5}}}
    new = {"split": "b", "config": {"train": {"lr": 0.01, "epochs": 5}}}
    assert changes(old, new) == ["train.lr 0.001 -> 0.01", "split"]
    assert changes(old, old) == []


def test_a_key_added_later_leaves_earlier_folds_up_to_date_until_it_is_used():
    from pipeline.lib.compat import ADDED_KEYS
    from pipeline.lib.config import Config
    from pipeline.lib.identity import training_sections
    for section, keys in ADDED_KEYS.items():
        for key, before in keys.items():
            assert getattr(getattr(Config(), section), key) == before  # the default trains as before
            assert key not in training_sections(Config())[section]
    assert training_sections(load_config(DEMO, ["train.ema=0.9"]))["train"]["ema"] == 0.9
    assert name("train.ema=0.9") != name()
    assert training_sections(load_config(DEMO))["data"]["n_folds"] == 3  # demo.yaml's split is not the default
    assert name("data.n_folds=5") != name()
