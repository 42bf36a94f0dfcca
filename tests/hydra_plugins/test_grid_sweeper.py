"""The grid sweeper composes each job's config once: its pre-check parses every config file
once (ParsedOnce), jobs with the same config-group choices share their defaults list and merged
files (SharedByChoices), and Hydra's in-process launcher runs the configs the check composed
(ComposedOnce), with the config hash the check computed."""

import contextlib
import json
import sys

import pytest
from hydra import initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from hydra_plugins.metric_runner_sweeper import _impl
from hydra_plugins.metric_runner_sweeper._impl import (
    ParsedOnce,
    SharedByChoices,
    sharing_what_group_choices_decide,
)
from metric_runner.runner import cli, components, sweep
from metric_runner.runner.registry import CONF_DIR

TINY = ["epochs=1", "model=mlp"]


def sweep_without_training(monkeypatch, sweep_dir, *overrides):
    """`metric-run -m ...` in this process with every job's training replaced by nothing;
    returns the overrides of each job the config loader composed, in order."""
    composed = []
    compose = ConfigLoaderImpl.load_sweep_config

    def counted(loader, master_config, sweep_overrides):
        composed.append(list(sweep_overrides))
        return compose(loader, master_config, sweep_overrides)

    monkeypatch.setattr(ConfigLoaderImpl, "load_sweep_config", counted)
    monkeypatch.setattr(cli, "run", lambda cfg, run_dir, callbacks=(): [])
    arguments = ["-m", "hydra/sweeper=grid", f"hydra.sweep.dir={sweep_dir}", *overrides]
    monkeypatch.setattr(sys, "argv", ["metric-run", *arguments])
    cli.main()
    return composed


def job_record(sweep_dir, number):
    return json.loads((sweep_dir / str(number) / "job.json").read_text())


def test_each_job_is_composed_once_and_runs_the_config_it_would_alone(tmp_path, monkeypatch):
    sweep_dir = tmp_path / "grid"
    hashed = []
    job_hash = sweep.job_hash
    monkeypatch.setattr(sweep, "job_hash", lambda cfg: hashed.append(cfg) or job_hash(cfg))
    composed = sweep_without_training(monkeypatch, sweep_dir, *TINY, "loss=triplet,contrastive")
    jobs = [[*TINY, "loss=triplet"], [*TINY, "loss=contrastive"]]
    assert composed == jobs  # Hydra's launcher alone would compose each a second time
    assert hashed == []  # each job has the hash its check computed
    for number, overrides in enumerate(jobs):
        alone = cli.compose_config(overrides)
        ran = OmegaConf.load(sweep_dir / str(number) / ".hydra" / "config.yaml")
        assert ran.loss == alone.loss and ran.model == alone.model and ran.epochs == 1
        assert job_record(sweep_dir, number)["config_hash"] == job_hash(alone)


def test_jobs_past_the_kept_configs_are_composed_again(tmp_path, monkeypatch):
    monkeypatch.setattr(_impl, "MOST_KEPT_CONFIGS", 1)
    sweep_dir = tmp_path / "grid"
    composed = sweep_without_training(monkeypatch, sweep_dir, *TINY, "seed=0,1,2")
    jobs = [[*TINY, f"seed={seed}"] for seed in (0, 1, 2)]
    assert composed == [*jobs, *jobs[1:]]
    hashes = [job_record(sweep_dir, n)["config_hash"] for n in range(3)]
    assert hashes == [sweep.job_hash(cli.compose_config(job)) for job in jobs]


@pytest.fixture
def hydra_loader():
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="metric-run"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", ["hydra/sweeper=grid"], RunMode.MULTIRUN)
        yield loader, master


def test_configs_composed_from_files_parsed_once_are_those_composed_from_the_files(hydra_loader):
    """Composing changes the configs it loads: each composition must get its own copy."""
    loader, master = hydra_loader
    jobs = [
        ["loss=triplet"],
        ["loss=contrastive", "~miner"],
        ["loss=triplet", "loss.margin=0.3", "model=mlp"],
        ["loss=triplet"],
        ["experiment=digits_benchmark", "seed=4"],
    ]
    expected = [OmegaConf.to_yaml(loader.load_sweep_config(master, job)) for job in jobs]
    plain = loader.repository
    loader.repository = ParsedOnce(plain)
    try:
        got = [OmegaConf.to_yaml(loader.load_sweep_config(master, job)) for job in jobs]
        parsed = len(loader.repository.parsed)
    finally:
        loader.repository = plain
    assert got == expected
    assert expected[0] != expected[1] and expected[0] == expected[3]
    assert 10 < parsed < 60  # each file once (the config groups' options), not once per job


def test_jobs_that_differ_only_in_their_seed_are_checked_once(tmp_path, monkeypatch):
    checked = []
    check = components.check_config

    def recorded(cfg):
        checked.append((cfg.loss.name, cfg.seed))
        return check(cfg)

    monkeypatch.setattr(components, "check_config", recorded)
    overrides = ["loss=triplet,contrastive", "seed=0,1,2"]
    sweep_without_training(monkeypatch, tmp_path / "grid", *TINY, *overrides)
    assert checked == [("TripletMarginLoss", 0), ("ContrastiveLoss", 0)]


def test_metric_runs_check_does_not_read_the_seed():
    """What lets a sweep over seeds check its config once (sweep.NOT_CHECKED)."""
    assert sweep.NOT_CHECKED == ("seed",)
    components.check_config(cli.compose_config(["seed=not-a-number"]))


@pytest.mark.parametrize("sharing", [False, True], ids=["", "sharing_group_choices"])
def test_a_job_that_adds_to_the_search_path_leaves_the_other_jobs_sources(
    hydra_loader, tmp_path, sharing
):
    """The compositions share Hydra's config repository until one changes its sources (and
    a defaults list made with another search path is not shared)."""
    loader, master = hydra_loader
    (tmp_path / "loss").mkdir()
    (tmp_path / "loss" / "extra.yaml").write_text("name: TripletMarginLoss\nmargin: 0.7\n")
    plain = loader.repository
    loader.repository = ParsedOnce(plain)
    try:
        with sharing_what_group_choices_decide(loader) if sharing else contextlib.nullcontext():
            extra = loader.load_sweep_config(
                master, [f"hydra.searchpath=[file://{tmp_path}]", "loss=extra"]
            )
            with pytest.raises(MissingConfigException):
                loader.load_sweep_config(master, ["loss=extra"])
        sources = [source.path for source in loader.repository.get_sources()]
    finally:
        loader.repository = plain
    assert extra.loss.margin == 0.7
    assert str(tmp_path) not in sources and sources == [s.path for s in plain.get_sources()]


def test_the_checks_resolved_config_is_the_one_its_job_gets(hydra_loader):
    """sweep.task_container converts the job's config where it is (no copy first): the same
    values as converting the copy the task function gets, interpolations into Hydra's node,
    resolvers and missing values included."""
    loader, master = hydra_loader
    overrides = ["+number=${hydra:job.num}", "+paths_again=${paths}", "+later=???", "seed=7"]
    saved = HydraConfig.instance().cfg
    try:
        cfg, _ = sweep.compose_job(loader, master, overrides, number=3)
        got = sweep.task_container(cfg)
        expected = OmegaConf.to_container(sweep.without_hydra(cfg), resolve=True)
    finally:
        HydraConfig.instance().cfg = saved
    assert got == expected
    assert got["number"] == 3 and got["later"] == "???" and got["seed"] == 7
    assert got["paths_again"] == got["paths"] and "${" not in json.dumps(got)
    assert "hydra" not in got and got["sweep_name"] == expected["sweep_name"]


def node_flags(node, path="cfg"):
    """(path, flags, object type) of every node: what to_yaml leaves out (struct, readonly)."""
    rows = [(path, dict(node._metadata.flags), node._metadata.object_type)]
    if isinstance(node, DictConfig) and not (node._is_missing() or node._is_none()):
        for key, child in node.items_ex(resolve=False):
            child = node._get_node(key)
            rows += node_flags(child, f"{path}.{key}")
    elif isinstance(node, ListConfig) and not (node._is_missing() or node._is_none()):
        for index in range(len(node)):
            rows += node_flags(node._get_node(index), f"{path}[{index}]")
    return rows


SHARING_JOBS = [
    ["epochs=1", "seed=0"],
    ["epochs=1", "seed=1"],
    ["seed=2", "epochs=1", "loss.alpha=0.25"],  # same choices, other values, other order
    ["loss=triplet", "seed=3"],
    ["loss=triplet", "loss.margin=0.3", "+loss.note='a b, c'", "seed=4"],
    ["loss=triplet", "~miner", "seed=5"],
    ["loss=triplet", "~miner", "seed=6", "+flag=true", "+items=[1,2.5,x]"],
    ["dataset=cub", "seed=7"],  # the dataset's defaults list drops self_supervised
    ["dataset=cub", "seed=8", "+extra={a: 1, b: [null]}", "epochs=2"],
    [
        "debug=fast",
        "+loss@second_loss=contrastive",
        "seed=9",
        "+number=${hydra:job.num}",
        '+quoted="x=y"',
    ],
    ["seed=10", "+loss@second_loss=contrastive", "debug=fast"],
    ["model=mlp", "loss=contrastive", "seed=11", "hydra.job.chdir=false"],
    ["loss=contrastive", "model=mlp", "seed=12"],  # the same choices in another order
    ["experiment=digits_benchmark", "seed=13"],
    ["epochs=1", "seed=14"],  # back to the first choices after others
]


def test_jobs_composed_with_what_their_group_choices_share_are_composed_as_by_hydra(
    hydra_loader,
):
    """The shared defaults lists and merges give each job the config Hydra composes for it
    alone: values, Hydra's node (overrides.task, runtime.choices, job.override_dirname,
    job.num), interpolations, and the flags of every node."""
    loader, master = hydra_loader
    saved = HydraConfig.instance().cfg

    def composed(number, overrides):
        cfg, _ = sweep.compose_job(loader, master, overrides, number)
        resolved = OmegaConf.to_container(sweep.without_hydra(cfg), resolve=True)
        return OmegaConf.to_yaml(cfg), resolved, node_flags(cfg)

    created = []
    create = SharedByChoices.create_defaults_list

    def counted(shared, **arguments):
        result = create(shared, **arguments)
        created.append(len(shared.defaults_lists))
        return result

    try:
        expected = [composed(n, job) for n, job in enumerate(SHARING_JOBS)]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(SharedByChoices, "create_defaults_list", counted)
            with sharing_what_group_choices_decide(loader):
                got = [composed(n, job) for n, job in enumerate(SHARING_JOBS)]
        after = composed(3, SHARING_JOBS[3])  # Hydra's own composition again
    finally:
        HydraConfig.instance().cfg = saved
    for job, (yaml, resolved, flags), (want_yaml, want_resolved, want_flags) in zip(
        SHARING_JOBS, got, expected
    ):
        assert yaml == want_yaml, job
        assert resolved == want_resolved, job
        assert flags == want_flags, job
    assert after == expected[3]
    assert "loss.alpha=0.25" in expected[2][0] and "b: 1" not in expected[0][0]
    assert expected[9][1]["number"] == 9 and expected[8][1]["extra"] == {"a": 1, "b": [None]}
    assert created[-1] == 9  # one defaults list per set of group choices, not one per job
    assert "_compose_config_from_defaults_list" not in vars(loader)
