"""A study's settings: kept where every worker reads them and optuna-dashboard does not cut
them (a study system attr), and read from the user attr where studies made before kept them."""

import json

import optuna

from sweep.space import fix, load_space
from sweep.storage import settings as study_settings
from sweep.storage.settings import Settings

MAX_ATTR_LENGTH = 1024  # optuna-dashboard cuts a longer JSON attr value (its _serializer)


def test_the_settings_are_a_system_attr_out_of_the_dashboards_view(tmp_path):
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    settings = Settings(fix(load_space(None), {"dataset": "synthetic", "max_epochs": 1}),
                        goal=5)
    assert len(json.dumps(settings.to_dict())) > MAX_ATTR_LENGTH  # a user attr would be cut
    study_settings.save(study, settings)
    again = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    assert study_settings.load(again) == settings
    assert again.user_attrs == {}


def test_a_study_made_before_reads_its_settings_from_the_user_attr(tmp_path):
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    settings = Settings(load_space(None), goal=3, heartbeat=20)
    study.set_user_attr(study_settings.KEY, settings.to_dict())
    assert study_settings.load(study) == settings
    # Saved again (a confirmation run raised the goal), the system attr is what counts.
    study_settings.save(study, Settings(load_space(None), goal=11, heartbeat=20))
    assert study_settings.load(study).goal == 11
