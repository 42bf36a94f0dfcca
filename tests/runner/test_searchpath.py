"""Users keep their own config groups outside the package: `hydra.searchpath=[file://DIR]`
adds DIR's groups to the shipped ones."""

import pytest

from metric_runner.runner.cli import compose_config, prepare
from metric_runner.runner.components import check_config
from metric_runner.runner.registry import ConfigError


@pytest.fixture
def user_conf(tmp_path):
    """A user's folder: a new loss option, a new group, and an option named like a shipped one."""
    conf = tmp_path / "conf"
    for group in ("loss", "my_group"):
        (conf / group).mkdir(parents=True)
    (conf / "loss" / "my_loss.yaml").write_text(
        "name: TripletMarginLoss\nmargin: 0.3\ndistance: {name: CosineSimilarity}\n"
    )
    (conf / "loss" / "triplet.yaml").write_text("name: ContrastiveLoss\n")
    (conf / "my_group" / "settings.yaml").write_text("value: 3\n")
    return f"hydra.searchpath=[file://{conf}]"


def test_a_users_option_joins_a_shipped_group_and_builds(user_conf):
    cfg = compose_config([user_conf, "loss=my_loss"])
    loss = check_config(cfg).loss.build()
    assert type(loss).__name__ == "TripletMarginLoss" and loss.margin == 0.3
    assert type(loss.distance).__name__ == "CosineSimilarity"
    # The shipped groups and the rest of the run stay as they are.
    assert cfg.model == compose_config().model
    assert compose_config([user_conf, "loss=contrastive"]).loss.name == "ContrastiveLoss"


def test_a_users_new_group_is_added_with_plus(user_conf):
    assert compose_config([user_conf, "+my_group=settings"]).my_group.value == 3


def test_a_shipped_option_wins_over_a_users_of_the_same_name(user_conf):
    """The package's folder comes first on the search path: name your options differently."""
    assert compose_config([user_conf, "loss=triplet"]).loss.name == "TripletMarginLoss"


def test_without_the_searchpath_a_users_option_is_unknown():
    with pytest.raises(ConfigError, match="loss: no config 'my_loss' in conf/loss/"):
        compose_config(["loss=my_loss"])


def test_the_command_line_check_sees_the_users_options(user_conf):
    """metric-run checks the config before Hydra starts: the searchpath must reach that check."""
    arguments = [user_conf, "loss=my_loss"]
    assert prepare(arguments) == arguments
