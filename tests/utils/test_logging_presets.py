"""HookContainer & co. write what they claim (CSV, SQLite and TensorBoard, read back), pick the best
epoch, stop with patience, save and reload models, and produce PML's file names, tables and values
where PML's HookContainer is given the same inputs."""

import csv
import inspect
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from metric_runner import distances, losses, miners, testers
from metric_runner.utils import logging_presets as LP
from metric_runner.utils.accuracy_calculator import AccuracyCalculator
from metric_runner.utils.record_keeper_adapter import RecordKeeper, RecordWriter, hash_if_too_long

pytestmark = pytest.mark.usefixtures("single_threaded_faiss")

ITERATIONS_PER_EPOCH = 5
OURS = SimpleNamespace(distances=distances, losses=losses, miners=miners)


# ---- reading the records back ----


def read_csv(folder, group):
    with open(Path(folder) / f"{group}.csv") as f:
        return list(csv.reader(f))


def read_table(folder, table):
    """{column: [values]} of a logs.db table (without the id column), and each column's SQLite
    storage types."""
    connection = sqlite3.connect(Path(folder) / "logs.db")
    connection.row_factory = sqlite3.Row
    rows = connection.execute(f"SELECT * FROM [{table}] ORDER BY id").fetchall()
    columns = [c for c in rows[0].keys() if c != "id"]
    storage = {
        c: {r[0] for r in connection.execute(f"SELECT typeof([{c}]) FROM [{table}]")}
        for c in columns
    }
    connection.close()
    return {c: [row[c] for row in rows] for c in columns}, storage


def read_tensorboard(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {
        tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def public_callables(cls):
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_")
    }


def test_public_api_has_pml_names_and_signatures(pml):
    import pytorch_metric_learning.utils.logging_presets as pml_LP

    for name in ["get_record_keeper", "get_hook_container"]:
        assert inspect.signature(getattr(LP, name)) == inspect.signature(getattr(pml_LP, name))
    for cls in ["HookContainer", "EmptyContainer"]:
        ours = public_callables(getattr(LP, cls))
        theirs = public_callables(getattr(pml_LP, cls))
        assert theirs.items() <= ours.items(), cls
        assert inspect.signature(getattr(LP, cls)) == inspect.signature(getattr(pml_LP, cls))
    assert LP.EmptyContainer.end_of_iteration_hook is LP.EmptyContainer.end_of_testing_hook is None


# ---- training records ----


def stand_in_trainer(lib):
    """An object with the attributes PML's trainers give hooks (models, optimizers, loss_funcs,
    mining_funcs, lr_schedulers, loss_tracker, epoch, iteration, get_global_iteration)."""
    torch.manual_seed(0)
    trunk = torch.nn.Linear(4, 3)
    trainer = SimpleNamespace(
        epoch=1,
        iteration=0,
        loss_tracker=SimpleNamespace(losses={}, loss_weights={"metric_loss": 1, "total_loss": 1}),
        loss_funcs={
            "metric_loss": lib.losses.TripletMarginLoss(
                margin=0.2, distance=lib.distances.LpDistance(power=2)
            )
        },
        mining_funcs={"tuple_miner": lib.miners.MultiSimilarityMiner(epsilon=0.3)},
        models={"trunk": trunk},
        optimizers={"trunk_optimizer": torch.optim.SGD(trunk.parameters(), lr=0.05)},
        lr_schedulers={},
    )
    trainer.get_global_iteration = lambda: (
        (trainer.epoch - 1) * ITERATIONS_PER_EPOCH + trainer.iteration
    )
    return trainer


def run_iterations(hooks, trainer, loss_values):
    """Two epochs of ITERATIONS_PER_EPOCH iterations; the learning rate drops in epoch 2."""
    for global_iteration, value in enumerate(loss_values):
        trainer.epoch = 1 + global_iteration // ITERATIONS_PER_EPOCH
        trainer.iteration = global_iteration % ITERATIONS_PER_EPOCH
        trainer.optimizers["trunk_optimizer"].param_groups[0]["lr"] = 0.05 / trainer.epoch
        total = torch.tensor(value, requires_grad=True) * 2
        trainer.loss_tracker.losses = {"metric_loss": total / 2, "total_loss": total}
        hooks.end_of_iteration_hook(trainer)


LOSS_VALUES = [0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25]
LOGGED = [0, 2, 4, 5, 7, 9]  # iterations 0, 2, 4 of each epoch (log_freq=2), as global iterations


def test_end_of_iteration_hook_records_losses_settings_and_learning_rates(tmp_path):
    record_keeper, _, _ = LP.get_record_keeper(tmp_path / "logs", tmp_path / "tb")
    hooks = LP.get_hook_container(record_keeper, log_freq=2)
    run_iterations(hooks, stand_in_trainer(OURS), LOSS_VALUES)
    record_keeper.tensorboard_writer.flush()

    expected_total = [2 * LOSS_VALUES[i] for i in LOGGED]
    expected_lr = [0.05, 0.05, 0.05, 0.025, 0.025, 0.025]
    table, storage = read_table(tmp_path / "logs", "loss_histories")
    assert table["~iteration~"] == LOGGED
    np.testing.assert_allclose(table["total_loss"], expected_total, rtol=1e-6)
    np.testing.assert_allclose(table["metric_loss"], [LOSS_VALUES[i] for i in LOGGED], rtol=1e-6)
    assert storage == {"~iteration~": {"integer"}, "metric_loss": {"real"}, "total_loss": {"real"}}
    rows = read_csv(tmp_path / "logs", "trunk_optimizer_SGD")
    assert rows[0] == ["~iteration~", "lr"]
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], expected_lr)
    assert read_csv(tmp_path / "logs", "metric_loss_TripletMarginLoss")[1] == ["0", "0.2"]
    distance_rows = read_csv(
        tmp_path / "logs", "metric_loss_TripletMarginLoss__modules_distance_LpDistance"
    )
    assert distance_rows[:2] == [["~iteration~", "p", "power"], ["0", "2", "2"]]
    assert read_csv(tmp_path / "logs", "tuple_miner_MultiSimilarityMiner")[-1] == ["9", "0.3"]

    scalars = read_tensorboard(tmp_path / "tb")
    assert [step for step, _ in scalars["loss_histories/total_loss"]] == LOGGED
    np.testing.assert_allclose(
        [v for _, v in scalars["loss_histories/total_loss"]], expected_total, rtol=1e-6
    )
    np.testing.assert_allclose([v for _, v in scalars["trunk_optimizer_SGD/lr"]], expected_lr)


@pytest.mark.parametrize("prefix", [None, "exp1"])
def test_training_records_match_pml_hook_container(tmp_path, pml, prefix):
    """Same trainer state, our hooks with our losses vs PML's with PML's: the same files with the
    same contents, the same database tables."""
    import pytorch_metric_learning.utils.logging_presets as pml_LP
    from pytorch_metric_learning import distances as pml_distances
    from pytorch_metric_learning import losses as pml_losses
    from pytorch_metric_learning import miners as pml_miners

    pml_lib = SimpleNamespace(distances=pml_distances, losses=pml_losses, miners=pml_miners)
    for name, lib, presets in [("ours", OURS, LP), ("pml", pml_lib, pml_LP)]:
        record_keeper, _, _ = presets.get_record_keeper(tmp_path / name)
        hooks = presets.get_hook_container(
            record_keeper, log_freq=2, record_group_name_prefix=prefix
        )
        run_iterations(hooks, stand_in_trainer(lib), LOSS_VALUES)
        record_keeper.save_records()

    ours, theirs = tmp_path / "ours", tmp_path / "pml"
    csv_names = sorted(p.name for p in theirs.glob("*.csv"))
    assert sorted(p.name for p in ours.glob("*.csv")) == csv_names
    assert "loss_histories.csv" in csv_names  # the prefix names accuracy tables only, as in PML
    for csv_name in csv_names:
        assert (ours / csv_name).read_text() == (theirs / csv_name).read_text(), csv_name
        table = csv_name[: -len(".csv")]
        assert read_table(ours, table) == read_table(theirs, table)


# ---- test records, best epoch ----


def make_tester_and_data(end_of_testing_hook=None, **kwargs):
    """4 classes of 10 points in 2D, well separated: the identity embeds them perfectly, a
    projection onto a random 1D direction mixes them."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 4
    centers = torch.tensor([[4.0, 0.0], [0.0, 4.0], [-4.0, 0.0], [0.0, -4.0]])
    points = centers[labels] + 0.3 * torch.randn(40, 2, generator=generator)
    dataset_dict = {
        "val": torch.utils.data.TensorDataset(points[:24], labels[:24]),
        "train": torch.utils.data.TensorDataset(points[24:], labels[24:]),
    }
    tester = testers.GlobalEmbeddingSpaceTester(
        end_of_testing_hook=end_of_testing_hook,
        dataloader_num_workers=0,
        accuracy_calculator=AccuracyCalculator(
            include=("AMI", "precision_at_1"), k="max_bin_count"
        ),
        **kwargs,
    )
    return tester, dataset_dict


def good_model():
    return torch.nn.Identity()


def bad_model():
    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0], [1.0, 1.0]]))  # x+y: classes 0/1 and 2/3 merge
    return model


MODELS_BY_EPOCH = [
    (1, bad_model),
    (2, good_model),
    (3, bad_model),
    (4, good_model),
    (-1, good_model),
]


def test_end_of_testing_hook_records_accuracies_and_best_epoch(tmp_path):
    record_keeper, _, _ = LP.get_record_keeper(tmp_path / "logs", tmp_path / "tb")
    hooks = LP.get_hook_container(record_keeper, primary_metric="precision_at_1")
    tester, dataset_dict = make_tester_and_data(hooks.end_of_testing_hook)
    precision = {}
    for epoch, model in MODELS_BY_EPOCH:
        accuracies = tester.test(
            dataset_dict, epoch, model(), splits_to_eval=[("val", ["val", "train"])]
        )
        precision[epoch] = accuracies["val"]["precision_at_1_level0"]
    assert precision[2] == 1.0 and precision[1] < 0.8 and precision[3] == precision[1]

    table_name = "accuracies_normalized_GlobalEmbeddingSpaceTester_level_0_VAL_vs_TRAIN_and_VAL"
    table, storage = read_table(tmp_path / "logs", table_name)
    assert list(table) == [
        "~iteration~",
        "epoch",
        "AMI_level0",
        "precision_at_1_level0",
        "best_epoch",
        "best_accuracy",
    ]
    assert table["epoch"] == table["~iteration~"] == [1, 2, 3, 4, -1]
    assert table["precision_at_1_level0"] == [precision[e] for e, _ in MODELS_BY_EPOCH]
    # A tie (epoch 4) keeps the earlier best; a test outside training (epoch -1) is never best.
    assert table["best_epoch"] == [1, 2, 2, 2, 2]
    assert table["best_accuracy"] == [precision[1], 1.0, 1.0, 1.0, 1.0]
    assert storage["best_epoch"] == storage["epoch"] == {"integer"}
    assert read_csv(tmp_path / "logs", table_name)[2][-2:] == ["2", "1.0"]
    scalars = read_tensorboard(tmp_path / "tb")
    assert scalars[f"{table_name}/best_epoch"] == [
        (1, 1.0),
        (2, 2.0),
        (3, 2.0),
        (4, 2.0),
        (-1, 2.0),
    ]

    assert hooks.get_best_epoch_and_accuracy(tester, "val") == (2, 1.0)
    assert hooks.get_best_epoch_and_accuracy(tester, "val", ignore_epoch=(-1, 2, 4)) == (
        1,
        precision[1],
    )
    best_rows, key = hooks.get_accuracies_of_best_epoch(tester, "val")
    assert key == "precision_at_1_level0" and [r["epoch"] for r in best_rows] == [2, 4]
    assert [r["epoch"] for r in hooks.get_accuracies_of_epoch(tester, "val", 3)] == [3]
    assert hooks.get_accuracy_history(tester, "val") == {
        "epoch": [1, 2, 3, 4, -1],
        "precision_at_1_level0": table["precision_at_1_level0"],
    }
    assert list(hooks.get_accuracy_history(tester, "val", metrics=["AMI"])) == [
        "epoch",
        "AMI_level0",
    ]
    assert hooks.get_curr_primary_metric(tester, "val") == 1.0
    # PML's semantics, black-box: the current accuracy against every recorded one.
    assert hooks.is_new_best_accuracy(tester, "val", 5) == (False, 1.0, 2, 1.0)
    tester.test(dataset_dict, 5, bad_model(), splits_to_eval=[("val", ["val", "train"])])
    assert hooks.is_new_best_accuracy(tester, "val", 5) == (False, precision[1], 2, 1.0)


def test_test_records_match_pml_hook_container(tmp_path, pml):
    """PML's HookContainer and ours, fed the same tester results, write identical tables."""
    import pytorch_metric_learning.utils.logging_presets as pml_LP

    containers = []
    for name, presets in [("ours", LP), ("pml", pml_LP)]:
        record_keeper, _, _ = presets.get_record_keeper(tmp_path / name)
        containers.append(
            (
                presets.get_hook_container(
                    record_keeper, record_group_name_prefix="p", primary_metric="precision_at_1"
                ),
                record_keeper,
            )
        )
    tester, dataset_dict = make_tester_and_data(label_hierarchy_level=0)
    new_bests = []
    for epoch, model in MODELS_BY_EPOCH:
        tester.test(dataset_dict, epoch, model())
        answers = [hooks.is_new_best_accuracy(tester, "val", epoch) for hooks, _ in containers]
        assert answers[0] == answers[1]
        new_bests.append(answers[0][0])
        for hooks, record_keeper in containers:
            hooks.end_of_testing_hook(tester)
            record_keeper.save_records()  # PML's hook leaves the saving to its epoch hook
    for split in ["VAL", "TRAIN"]:
        # record-keeper hashes the middle of a long name (the TRAIN one), for both.
        name = hash_if_too_long(
            f"p_accuracies_normalized_GlobalEmbeddingSpaceTester_level_0_{split}_vs_self"
        )
        assert read_table(tmp_path / "ours", name) == read_table(tmp_path / "pml", name)
        assert (tmp_path / "ours" / f"{name}.csv").read_text() == (
            tmp_path / "pml" / f"{name}.csv"
        ).read_text()
    assert new_bests == [True, True, False, False, False]
    (ours, _), (theirs, _) = containers
    for split in ["val", "train"]:
        expected = theirs.get_best_epoch_and_accuracy(tester, split)
        assert ours.get_best_epoch_and_accuracy(tester, split) == expected
        assert expected[0] is not None


def test_a_nan_accuracy_is_recorded_but_never_best(tmp_path):
    """Classes of one image each: no query has a relevant reference, the k-NN metrics are NaN
    (stored as NULL), and neither that epoch nor a later one with NaN becomes the best."""
    record_keeper, _, _ = LP.get_record_keeper(tmp_path)
    hooks = LP.get_hook_container(record_keeper, primary_metric="precision_at_1")
    tester, dataset_dict = make_tester_and_data(hooks.end_of_testing_hook)
    singletons = torch.utils.data.TensorDataset(torch.randn(6, 2), torch.arange(6))
    tester.test({"val": singletons}, 1, good_model())
    tester.test(dataset_dict, 2, good_model(), splits_to_eval=[("val", ["val"])])
    tester.test({"val": singletons}, 3, good_model())
    table, _ = read_table(
        tmp_path, "accuracies_normalized_GlobalEmbeddingSpaceTester_level_0_VAL_vs_self"
    )
    assert table["precision_at_1_level0"] == [None, 1.0, None]
    assert table["best_epoch"] == [None, 2, 2]
    assert hooks.get_best_epoch_and_accuracy(tester, "val") == (2, 1.0)


def test_primary_metric_over_all_label_levels_is_the_average(tmp_path):
    record_keeper, _, _ = LP.get_record_keeper(tmp_path)
    hooks = LP.get_hook_container(record_keeper, primary_metric="precision_at_1")
    tester = testers.GlobalEmbeddingSpaceTester(
        end_of_testing_hook=hooks.end_of_testing_hook,
        label_hierarchy_level="all",
        dataloader_num_workers=0,
        accuracy_calculator=AccuracyCalculator(include=("precision_at_1",)),
    )
    points = torch.tensor([[0.0, 1.0], [0.1, 1.0], [1.0, 0.0], [1.0, 0.1]])
    labels = torch.tensor([[0, 0], [0, 1], [1, 1], [1, 0]])  # level 0: p@1 = 1, level 1: p@1 = 0
    tester.test({"val": torch.utils.data.TensorDataset(points, labels)}, 1, torch.nn.Identity())
    assert hooks.get_curr_primary_metric(tester, "val") == 0.5
    assert hooks.get_best_epoch_and_accuracy(tester, "val") == (1, 0.5)


# ---- models ----


def saveable_trainer():
    torch.manual_seed(0)
    trunk, embedder = torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)
    loss = losses.ProxyAnchorLoss(num_classes=3, embedding_size=2)
    optimizers = {
        "trunk_optimizer": torch.optim.Adam(trunk.parameters(), lr=0.1),
        "metric_loss_optimizer": torch.optim.SGD(loss.parameters(), lr=0.1, momentum=0.9),
    }
    schedulers = {
        "trunk_scheduler_by_epoch": torch.optim.lr_scheduler.StepLR(
            optimizers["trunk_optimizer"], 1, gamma=0.5
        )
    }
    return SimpleNamespace(
        models={"trunk": trunk, "embedder": torch.nn.DataParallel(embedder)},
        optimizers=optimizers,
        lr_schedulers=schedulers,
        loss_funcs={"metric_loss": loss},
        mining_funcs={"tuple_miner": miners.MultiSimilarityMiner()},
    )


def take_steps(trainer, steps):
    for _ in range(steps):
        x = torch.randn(8, 4)
        embeddings = trainer.models["embedder"](trainer.models["trunk"](x))
        loss = trainer.loss_funcs["metric_loss"](embeddings, torch.arange(8) % 3)
        for optimizer in trainer.optimizers.values():
            optimizer.zero_grad()
        loss.backward()
        for optimizer in trainer.optimizers.values():
            optimizer.step()
        trainer.lr_schedulers["trunk_scheduler_by_epoch"].step()


def state_of(trainer):
    return {
        "trunk": {k: v.clone() for k, v in trainer.models["trunk"].state_dict().items()},
        "proxies": trainer.loss_funcs["metric_loss"].proxies.detach().clone(),
        "adam": trainer.optimizers["trunk_optimizer"].state_dict()["state"][0]["exp_avg"].clone(),
        "momentum": trainer.optimizers["metric_loss_optimizer"]
        .state_dict()["state"][0]["momentum_buffer"]
        .clone(),
        "lr": trainer.optimizers["trunk_optimizer"].param_groups[0]["lr"],
        "scheduler_epoch": trainer.lr_schedulers["trunk_scheduler_by_epoch"].last_epoch,
    }


def assert_same_state(actual, expected):
    assert actual.keys() == expected.keys()
    for key in expected:
        if isinstance(expected[key], dict):
            for name in expected[key]:
                assert torch.equal(actual[key][name], expected[key][name]), (key, name)
        elif torch.is_tensor(expected[key]):
            assert torch.equal(actual[key], expected[key]), key
        else:
            assert actual[key] == expected[key], key


SAVED_NAMES = [
    "trunk",
    "embedder",
    "trunk_optimizer",
    "metric_loss_optimizer",
    "trunk_scheduler_by_epoch",
    "metric_loss",
    "tuple_miner",
]


def test_save_and_load_latest_and_best_models(tmp_path):
    hooks = LP.HookContainer(record_keeper=None)
    trainer = saveable_trainer()
    saved = {}
    for epoch in [1, 2, 3]:
        take_steps(trainer, 2)
        saved[epoch] = state_of(trainer)
        hooks.save_models(trainer, tmp_path, epoch, epoch - 1)
        if epoch == 2:
            hooks.save_models(trainer, tmp_path, "best2")
    expected_files = {f"{n}_{s}.pth" for n in SAVED_NAMES for s in ["3", "best2"]}
    assert {p.name for p in tmp_path.iterdir()} == expected_files
    # As PML does, a DataParallel model is saved wrapped.
    embedder_state = torch.load(tmp_path / "embedder_3.pth", weights_only=True)
    assert list(embedder_state) == ["module.weight", "module.bias"]

    fresh = saveable_trainer()
    assert hooks.load_latest_saved_models(fresh, tmp_path) == 4
    assert_same_state(state_of(fresh), saved[3])
    assert hooks.load_latest_saved_models(fresh, tmp_path, best=True) == 3
    assert_same_state(state_of(fresh), saved[2])
    assert hooks.load_latest_saved_models(saveable_trainer(), tmp_path / "nothing") == 1


def test_an_interrupted_save_is_not_loaded(tmp_path):
    hooks = LP.HookContainer(record_keeper=None)
    trainer = saveable_trainer()
    take_steps(trainer, 1)
    hooks.save_models(trainer, tmp_path, 4)
    expected = state_of(trainer)
    take_steps(trainer, 1)
    torch.save(trainer.models["trunk"].state_dict(), tmp_path / "trunk_5.pth")  # nothing else
    fresh = saveable_trainer()
    assert hooks.load_latest_saved_models(fresh, tmp_path) == 5
    assert_same_state(state_of(fresh), expected)


def test_saved_files_match_pml_and_pml_loads_them(tmp_path, pml):
    import pytorch_metric_learning.utils.logging_presets as pml_LP

    trainer = saveable_trainer()
    take_steps(trainer, 1)
    (tmp_path / "pml").mkdir()  # PML's save_models expects the folder
    LP.HookContainer(None).save_models(trainer, tmp_path / "ours", 7)
    pml_LP.HookContainer(None).save_models(trainer, tmp_path / "pml", 7)
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == sorted(
        p.name for p in (tmp_path / "pml").iterdir()
    )
    fresh = saveable_trainer()
    assert pml_LP.HookContainer(None).load_latest_saved_models(fresh, tmp_path / "ours") == 8
    assert_same_state(state_of(fresh), state_of(trainer))


def test_save_models_false_writes_nothing(tmp_path):
    LP.HookContainer(None, save_models=False).save_models(saveable_trainer(), tmp_path / "m", 1)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "epoch, best_epoch, patience, expected",
    [(5, 2, 3, True), (5, 2, 2, False), (5, 5, 0, True), (6, 5, 0, False), (9, 1, None, True)],
)
def test_patience_remaining(epoch, best_epoch, patience, expected):
    assert LP.HookContainer(None).patience_remaining(epoch, best_epoch, patience) is expected


# ---- setup errors, record-keeper adapter, missing packages ----


def test_end_of_epoch_hook_refuses_a_setup_it_cannot_validate(tmp_path):
    hooks = LP.HookContainer(None, primary_metric="precision_at_1")
    tester, dataset_dict = make_tester_and_data()
    with pytest.raises(ValueError, match="validation_split_name='val' is not a query split"):
        hooks.end_of_epoch_hook(tester, {"train": dataset_dict["train"]}, tmp_path)
    with pytest.raises(ValueError, match="primary_metric='NMI' is not computed"):
        LP.HookContainer(None, primary_metric="NMI").end_of_epoch_hook(
            tester, dataset_dict, tmp_path
        )
    with pytest.raises(ValueError, match="patience"):
        hooks.end_of_epoch_hook(tester, dataset_dict, tmp_path, patience=-1)
    with pytest.raises(ValueError, match="experiment_name"):
        LP.get_record_keeper(tmp_path, global_db_path=tmp_path / "all.db")


def test_global_database_records_each_experiment(tmp_path):
    for name, value in [("first", 1.5), ("second", 2.5)]:
        record_keeper, _, _ = LP.get_record_keeper(
            tmp_path / name, global_db_path=tmp_path / "all.db", experiment_name=name
        )
        record_keeper.update_records({"g": {"x": value}}, 0)
        record_keeper.save_records()
    connection = sqlite3.connect(tmp_path / "all.db")
    rows = connection.execute(
        "SELECT e.experiment_name, g.x FROM g JOIN experiment_ids e ON g.experiment_id = e.id"
    ).fetchall()
    assert rows == [("first", 1.5), ("second", 2.5)]


def test_adapter_stores_numpy_values_as_numbers_and_lists_as_json(tmp_path):
    record_keeper = RecordKeeper(record_writer=RecordWriter(tmp_path, save_lists=True))
    values = {
        "int64": np.int64(3),
        "float32": np.float32(0.25),
        "bool": np.bool_(True),
        "zero_d": np.array(2.5),
        "array": np.array([1.5, 2.5], dtype=np.float32),
        "tensor": torch.tensor([1, 2]),
    }
    record_keeper.update_records({"g": values}, np.int64(7))
    record_keeper.save_records()
    table, storage = read_table(tmp_path, "g")
    assert table == {
        "~iteration~": [7],
        "int64": [3],
        "float32": [0.25],
        "bool": [1],
        "zero_d": [2.5],
        "array_list": ["[1.5, 2.5]"],
        "tensor_list": ["[1, 2]"],
    }
    assert storage["int64"] == storage["bool"] == {"integer"} and storage["float32"] == {"real"}


def test_without_record_keeper_there_are_no_hooks(tmp_path):
    """PML's behaviour when record-keeper/tensorboard are absent: no record keeper, and an
    EmptyContainer whose hooks do nothing."""
    code = (
        "import sys; sys.modules['record_keeper'] = None\n"
        "from metric_runner.utils import logging_presets as LP\n"
        "assert LP.get_record_keeper('unused_folder') == (None, None, None)\n"
        "hooks = LP.get_hook_container(None)\n"
        "assert isinstance(hooks, LP.EmptyContainer)\n"
        "assert hooks.end_of_iteration_hook is None and hooks.end_of_testing_hook is None\n"
        "assert hooks.end_of_epoch_hook('tester', {}, 'folder') is None\n"
        "import os; assert not os.path.exists('unused_folder')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "pip install record-keeper tensorboard" in result.stderr


# ---- end to end: MetricLossOnly + GlobalEmbeddingSpaceTester + HookContainer ----


def clustered_dataset(num_classes, per_class, seed, first_label=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(per_class) + first_label
    centers = 2 * torch.randn(num_classes, 8, generator=generator)
    points = centers[labels - first_label] + 1.5 * torch.randn(len(labels), 8, generator=generator)
    return torch.utils.data.TensorDataset(points, labels)


TRAIN_SET = clustered_dataset(4, 24, seed=0)
VAL_SET = clustered_dataset(4, 10, seed=1, first_label=4)  # unseen classes, as in zero-shot


def build_training(lr=0.05, end_of_iteration_hook=None, end_of_epoch_hook=None):
    from metric_runner.trainers import MetricLossOnly

    torch.manual_seed(0)
    trunk, embedder = torch.nn.Linear(8, 8), torch.nn.Linear(8, 4)
    optimizers = {
        "trunk_optimizer": torch.optim.Adam(trunk.parameters(), lr=lr),
        "embedder_optimizer": torch.optim.SGD(embedder.parameters(), lr=lr, momentum=0.9),
    }
    return MetricLossOnly(
        models={"trunk": trunk, "embedder": embedder},
        optimizers=optimizers,
        batch_size=16,
        loss_funcs={"metric_loss": losses.TripletMarginLoss(margin=0.2)},
        mining_funcs={"tuple_miner": miners.MultiSimilarityMiner(epsilon=0.2)},
        dataset=TRAIN_SET,
        lr_schedulers={
            "trunk_scheduler_by_epoch": torch.optim.lr_scheduler.StepLR(
                optimizers["trunk_optimizer"], 1, gamma=0.8
            )
        },
        data_device="cpu",
        dataloader_num_workers=0,
        end_of_iteration_hook=end_of_iteration_hook,
        end_of_epoch_hook=end_of_epoch_hook,
    )


def presets(folder, **hook_kwargs):
    record_keeper, _, _ = LP.get_record_keeper(folder / "logs", folder / "tb")
    hooks = LP.get_hook_container(record_keeper, primary_metric="precision_at_1", **hook_kwargs)
    tester = testers.GlobalEmbeddingSpaceTester(
        end_of_testing_hook=hooks.end_of_testing_hook,
        dataloader_num_workers=0,
        accuracy_calculator=AccuracyCalculator(
            include=("mean_average_precision_at_r", "precision_at_1"), k="max_bin_count"
        ),
    )
    return record_keeper, hooks, tester


VAL_TABLE = "accuracies_normalized_GlobalEmbeddingSpaceTester_level_0_VAL_vs_self"


class Recorder:
    """Wraps the presets' hooks to keep what they were shown: each iteration's total loss and
    each epoch's model weights."""

    def __init__(self, hooks, epoch_hook):
        self.hooks, self.epoch_hook = hooks, epoch_hook
        self.total_losses, self.trunk_weights = [], {}

    def end_of_iteration_hook(self, trainer):
        self.total_losses.append(trainer.losses["total_loss"].item())
        self.hooks.end_of_iteration_hook(trainer)

    def end_of_epoch_hook(self, trainer):
        self.trunk_weights[trainer.epoch] = trainer.models["trunk"].weight.detach().clone()
        return self.epoch_hook(trainer)


def expected_best_and_stop(accuracies_by_epoch, patience):
    """The best epoch after each test (ties keep the earlier one) and the epoch where
    `epoch - best_epoch > patience` stops training (None: never)."""
    best_epochs, best = [], None
    for epoch, accuracy in accuracies_by_epoch:
        if best is None or accuracy > best[1]:
            best = (epoch, accuracy)
        best_epochs.append(best[0])
        if epoch - best[0] > patience:
            return best_epochs, epoch
    return best_epochs, None


@pytest.mark.slow
def test_training_run_logs_validates_saves_and_stops(tmp_path):
    record_keeper, hooks, tester = presets(tmp_path, log_freq=2)
    epoch_hook = hooks.end_of_epoch_hook(tester, {"val": VAL_SET}, tmp_path / "models", patience=1)
    recorder = Recorder(hooks, epoch_hook)
    trainer = build_training(0.05, recorder.end_of_iteration_hook, recorder.end_of_epoch_hook)
    trainer.train(num_epochs=12)

    # Training records: every other iteration of each 6-iteration epoch.
    logged = [i for i in range(len(recorder.total_losses)) if (i % 6) % 2 == 0]
    table, _ = read_table(tmp_path / "logs", "loss_histories")
    assert table["~iteration~"] == logged
    assert table["total_loss"] == pytest.approx(
        [recorder.total_losses[i] for i in logged], rel=1e-6
    )
    lrs = read_table(tmp_path / "logs", "trunk_optimizer_Adam")[0]["lr"]
    assert lrs == pytest.approx([0.05 * 0.8 ** (i // 6) for i in logged])
    scalars = read_tensorboard(tmp_path / "tb")
    assert [s for s, _ in scalars["loss_histories/total_loss"]] == logged

    # Validation records, patience and the stop epoch.
    val, _ = read_table(tmp_path / "logs", VAL_TABLE)
    history = list(zip(val["epoch"], val["precision_at_1_level0"]))
    best_epochs, stop_epoch = expected_best_and_stop(history, patience=1)
    assert val["best_epoch"] == best_epochs
    assert stop_epoch is not None and trainer.epoch == stop_epoch == val["epoch"][-1] < 12
    assert val["epoch"] == list(range(1, stop_epoch + 1))
    assert len(recorder.total_losses) == 6 * stop_epoch
    assert [v for _, v in scalars[f"{VAL_TABLE}/precision_at_1_level0"]] == pytest.approx(
        val["precision_at_1_level0"]
    )

    # Saved files: the latest and the best epoch's, nothing else.
    best = best_epochs[-1]
    saved = {p.name for p in (tmp_path / "models").iterdir()}
    names = [
        "trunk",
        "embedder",
        "trunk_optimizer",
        "embedder_optimizer",
        "trunk_scheduler_by_epoch",
        "metric_loss",
        "tuple_miner",
    ]
    assert saved == {f"{n}_{s}.pth" for n in names for s in [stop_epoch, f"best{best}"]}
    for suffix, epoch in [(f"best{best}", best), (stop_epoch, stop_epoch)]:
        weights = torch.load(tmp_path / "models" / f"trunk_{suffix}.pth", weights_only=True)
        assert torch.equal(weights["weight"], recorder.trunk_weights[epoch])
    if best != stop_epoch:
        assert not torch.equal(recorder.trunk_weights[best], recorder.trunk_weights[stop_epoch])


@pytest.mark.parametrize(
    "test_interval, patience, expected_tests",
    [(1, 2, [1, 2, 3, 4]), (3, 2, [3, 6]), (2, 0, [2, 4]), (2, None, [2, 4, 6, 8])],
)
def test_patience_stops_at_the_computed_epoch(tmp_path, test_interval, patience, expected_tests):
    """With lr=0 every test gives the same accuracy, so the best epoch stays the first tested
    one and training stops at the first test with epoch - best_epoch > patience."""
    record_keeper, hooks, tester = presets(tmp_path)
    epoch_hook = hooks.end_of_epoch_hook(
        tester,
        {"val": VAL_SET},
        tmp_path / "models",
        test_interval=test_interval,
        patience=patience,
    )
    trainer = build_training(0.0, hooks.end_of_iteration_hook, epoch_hook)
    trainer.train(num_epochs=8)
    val, _ = read_table(tmp_path / "logs", VAL_TABLE)
    assert val["epoch"] == expected_tests
    assert trainer.epoch == expected_tests[-1]
    assert set(val["best_epoch"]) == {expected_tests[0]}


@pytest.mark.slow
def test_load_latest_saved_models_resumes_as_if_uninterrupted(tmp_path):
    """3 epochs, then a fresh trainer resumes from the saved files for epochs 4-5: the weights,
    records and best epoch equal those of one trainer that ran 1-5 (both reseed before epoch 4,
    so they draw the same batches)."""

    def run(folder, resume):
        record_keeper, hooks, tester = presets(folder)
        epoch_hook = hooks.end_of_epoch_hook(tester, {"val": VAL_SET}, folder / "models")
        trainer = build_training(0.05, hooks.end_of_iteration_hook, epoch_hook)
        trainer.train(num_epochs=3)
        if resume:
            trainer = build_training(0.05, hooks.end_of_iteration_hook, epoch_hook)
            assert hooks.load_latest_saved_models(trainer, folder / "models") == 4
        torch.manual_seed(1)
        trainer.train(start_epoch=4, num_epochs=5)
        return trainer, hooks, tester

    uninterrupted, _, _ = run(tmp_path / "a", resume=False)
    resumed, hooks, tester = run(tmp_path / "b", resume=True)
    for name in ["trunk", "embedder"]:
        for key, value in uninterrupted.models[name].state_dict().items():
            assert torch.equal(resumed.models[name].state_dict()[key], value), (name, key)
    for folder in ["a", "b"]:
        assert read_table(tmp_path / folder / "logs", VAL_TABLE)[0]["epoch"] == [1, 2, 3, 4, 5]
    assert read_table(tmp_path / "b" / "logs", VAL_TABLE) == read_table(
        tmp_path / "a" / "logs", VAL_TABLE
    )
    assert read_table(tmp_path / "b" / "logs", "loss_histories") == read_table(
        tmp_path / "a" / "logs", "loss_histories"
    )


def test_an_epoch_already_tested_is_not_tested_again(tmp_path):
    """After a restart at an epoch whose accuracies are recorded, the hook saves models but
    does not run the tester again (PML's skip_eval_if_already_done)."""
    record_keeper, hooks, tester = presets(tmp_path)
    epoch_hook = hooks.end_of_epoch_hook(tester, {"val": VAL_SET}, tmp_path / "models")
    trainer = build_training(0.05, None, epoch_hook)
    trainer.train(num_epochs=2)
    assert (
        hooks.run_tester_separately(tester, {"val": VAL_SET}, 2, trainer.models["trunk"], None)
        is False
    )
    assert hooks.get_splits_to_eval(tester, {"val": VAL_SET, "train": TRAIN_SET}, 2, None) == [
        ("train", ["train"])
    ]
    assert hooks.get_splits_to_eval(tester, {"val": VAL_SET}, 3, None) == [("val", ["val"])]
    trainer.epoch = 2
    assert epoch_hook(trainer) is True
    assert read_table(tmp_path / "logs", VAL_TABLE)[0]["epoch"] == [1, 2]


@pytest.mark.slow
def test_training_run_writes_what_pml_hook_container_writes(tmp_path, pml):
    """The same training (our MetricLossOnly and tester), once with our hooks and once with PML's:
    every CSV file, the stop epoch and the saved files are the same."""
    import pytorch_metric_learning.utils.logging_presets as pml_LP

    stopped_at = {}
    for name, presets_module in [("ours", LP), ("pml", pml_LP)]:
        folder = tmp_path / name
        record_keeper, _, _ = presets_module.get_record_keeper(folder / "logs")
        hooks = presets_module.get_hook_container(
            record_keeper, primary_metric="precision_at_1", log_freq=2
        )
        tester = testers.GlobalEmbeddingSpaceTester(
            end_of_testing_hook=hooks.end_of_testing_hook,
            dataloader_num_workers=0,
            accuracy_calculator=AccuracyCalculator(include=("precision_at_1",)),
        )
        (folder / "models").mkdir(parents=True)  # PML's hooks expect the folder
        epoch_hook = hooks.end_of_epoch_hook(
            tester, {"val": VAL_SET, "train": TRAIN_SET}, folder / "models", patience=1
        )
        trainer = build_training(0.05, hooks.end_of_iteration_hook, epoch_hook)
        trainer.train(num_epochs=10)
        stopped_at[name] = trainer.epoch

    assert stopped_at["ours"] == stopped_at["pml"] < 10
    ours, theirs = tmp_path / "ours", tmp_path / "pml"
    csv_names = sorted(p.name for p in (theirs / "logs").glob("*.csv"))
    assert sorted(p.name for p in (ours / "logs").glob("*.csv")) == csv_names
    assert any(name.startswith("accuracies_") for name in csv_names)
    for csv_name in csv_names:
        assert (ours / "logs" / csv_name).read_text() == (theirs / "logs" / csv_name).read_text()
    assert sorted(p.name for p in (ours / "models").iterdir()) == sorted(
        p.name for p in (theirs / "models").iterdir()
    )
