"""Ready-made trainer and tester hooks, with PML's `logging_presets` API: training records (losses,
loss weights, loss/miner settings, learning rates) and test accuracies go to CSV files and SQLite
through record-keeper and to TensorBoard; models are validated and saved (latest and best);
training stops early when the validation accuracy has not improved for `patience` epochs.

    record_keeper, _, _ = get_record_keeper("logs", "tensorboard")
    hooks = get_hook_container(record_keeper)
    tester = testers.GlobalEmbeddingSpaceTester(end_of_testing_hook=hooks.end_of_testing_hook)
    end_of_epoch_hook = hooks.end_of_epoch_hook(tester, {"val": val_dataset}, "saved_models")

Files: `<csv_folder>/<group>.csv` and `<csv_folder>/logs.db` (one table per group),
`<model_folder>/<name>_<epoch>.pth` (latest) and `<name>_best<epoch>.pth` (best) for every
model, optimizer, lr scheduler, loss and miner of the trainer. Names and columns are PML's.
"""

import math
import os
import re
from functools import partial

import torch

from . import common_functions as c_f
from .atomic_write import write_atomically

try:
    from torch.utils.tensorboard import SummaryWriter

    from .record_keeper_adapter import RecordKeeper, RecordWriter, hash_if_too_long

    MISSING_PACKAGES = None
except ImportError as error:
    MISSING_PACKAGES = error

# The attributes that list what a ModuleWithRecords wants logged.
RECORDABLE_ATTRIBUTES = ["_record_these", "_record_these_stats"]
SAVED_FILE = re.compile(r"^(?P<name>.+)_(?P<best>best)?(?P<epoch>-?\d+)\.pth$")


def is_improvement(accuracy, best_epoch, best_accuracy):
    """NaN (no query had a relevant reference; SQLite stores it as NULL) never improves."""
    if accuracy is None or math.isnan(accuracy):
        return False
    return best_epoch is None or accuracy > best_accuracy


def get_record_keeper(
    csv_folder,
    tensorboard_folder=None,
    global_db_path=None,
    experiment_name=None,
    is_new_experiment=True,
    save_lists=False,
):
    """(record_keeper, record_writer, tensorboard_writer); (None, None, None) when record-keeper or
    tensorboard is not installed. `global_db_path` is a SQLite file shared by experiments, each
    recorded under `experiment_name`."""
    if MISSING_PACKAGES is not None:
        c_f.LOGGER.warning(
            f"There won't be any logging or model saving ({MISSING_PACKAGES}). "
            "To fix this, pip install record-keeper tensorboard"
        )
        return None, None, None
    if global_db_path is not None and experiment_name is None:
        raise ValueError("global_db_path needs an experiment_name to record this run under.")
    record_writer = RecordWriter(
        folder=csv_folder,
        global_db_path=global_db_path,
        experiment_name=experiment_name,
        is_new_experiment=is_new_experiment,
        save_lists=save_lists,
    )
    tensorboard_writer = None if tensorboard_folder is None else SummaryWriter(tensorboard_folder)
    record_keeper = RecordKeeper(
        tensorboard_writer=tensorboard_writer,
        record_writer=record_writer,
        attributes_to_search_for=RECORDABLE_ATTRIBUTES,
    )
    return record_keeper, record_writer, tensorboard_writer


def get_hook_container(record_keeper, **kwargs):
    """A HookContainer, or an EmptyContainer (hooks that do nothing) when record_keeper is None."""
    if record_keeper is None:
        c_f.LOGGER.warning("No record_keeper, so no preset hooks are being returned.")
        return EmptyContainer()
    return HookContainer(record_keeper, **kwargs)


class EmptyContainer:
    """Stands in for a HookContainer when the logging packages are absent: no hooks."""

    end_of_iteration_hook = None
    end_of_testing_hook = None

    def end_of_epoch_hook(self, *args):
        return None


class HookContainer:
    """Hooks for trainers and testers that log, validate, save models and stop early.

    primary_metric: the AccuracyCalculator metric that picks the best epoch (per label level it is
    `<metric>_level<L>`, over all levels `AVERAGE_<metric>`). validation_split_name: the split of
    dataset_dict that picks it. log_freq: training records are written every log_freq iterations
    of an epoch. record_group_name_prefix starts the names of the accuracy tables (CSV file,
    SQLite table, TensorBoard tag); training records keep their names, as in PML.
    """

    def __init__(
        self,
        record_keeper,
        record_group_name_prefix=None,
        primary_metric="mean_average_precision_at_r",
        validation_split_name="val",
        save_models=True,
        log_freq=50,
    ):
        if not (isinstance(log_freq, int) and log_freq > 0):
            raise ValueError(f"log_freq must be a positive int, got {log_freq!r}.")
        self.record_keeper = record_keeper
        self.record_group_name_prefix = record_group_name_prefix
        self.saveable_trainer_objects = [
            "models",
            "optimizers",
            "lr_schedulers",
            "loss_funcs",
            "mining_funcs",
        ]
        self.primary_metric = primary_metric
        self.validation_split_name = validation_split_name
        self.do_save_models = save_models
        self.log_freq = log_freq

    # ---- training records ----

    def end_of_iteration_hook(self, trainer):
        """Every log_freq iterations of an epoch: the losses and loss weights, the settings (and
        statistics) of each loss (with its sub-modules) and miner, the models' recordable
        attributes and each optimizer's learning rate, at the global iteration."""
        if trainer.iteration % self.log_freq != 0:
            return
        iteration = trainer.get_global_iteration()
        self.record_keeper.update_records(
            {
                "loss_histories": trainer.loss_tracker.losses,
                "loss_weights": trainer.loss_tracker.loss_weights,
            },
            iteration,
        )
        self.record_keeper.update_records(self.with_submodules(trainer.loss_funcs), iteration)
        self.record_keeper.update_records(trainer.mining_funcs or {}, iteration)
        self.record_keeper.update_records(trainer.models, iteration)
        self.record_keeper.update_records(
            trainer.optimizers, iteration, custom_attr_func=self.optimizer_custom_attr_func
        )
        self.record_keeper.save_records()

    def with_submodules(self, objects):
        """`objects` plus, for each module with children, `<name>_<Type>__modules`: its children
        (distance, reducer, inner loss, ...), recorded in groups named as PML names them."""
        records = {}
        for name, obj in objects.items():
            if obj is None:
                continue
            records[name] = obj
            children = dict(obj.named_children()) if isinstance(obj, torch.nn.Module) else {}
            if children:
                records[f"{name}_{type(obj).__name__}__modules"] = self.with_submodules(children)
        return records

    def optimizer_custom_attr_func(self, optimizer):
        return {"lr": optimizer.param_groups[0]["lr"]}

    # ---- validation, best model, patience ----

    def end_of_epoch_hook(
        self,
        tester,
        dataset_dict,
        model_folder,
        test_interval=1,
        patience=None,
        splits_to_eval=None,
        test_collate_fn=None,
    ):
        """The trainer's end-of-epoch hook: every test_interval epochs it tests, saves the latest
        and the best models in model_folder, and returns False (stop) once
        `epoch - best_epoch > patience`."""
        self.check_evaluation_setup(tester, dataset_dict, splits_to_eval)
        if not (isinstance(test_interval, int) and test_interval > 0):
            raise ValueError(f"test_interval must be a positive int, got {test_interval!r}.")
        if patience is not None and not (isinstance(patience, int) and patience >= 0):
            raise ValueError(f"patience must be None or an int >= 0, got {patience!r}.")

        def actual_hook(trainer):
            if trainer.epoch % test_interval != 0:
                return True
            best_epoch = self.save_models_and_eval(
                trainer,
                dataset_dict,
                model_folder,
                test_interval,
                tester,
                splits_to_eval,
                test_collate_fn,
            )
            return self.patience_remaining(trainer.epoch, best_epoch, patience)

        return actual_hook

    def check_evaluation_setup(self, tester, dataset_dict, splits_to_eval):
        queries = [query for query, _ in tester.check_splits_to_eval(dataset_dict, splits_to_eval)]
        if self.validation_split_name not in queries:
            raise ValueError(
                f"validation_split_name={self.validation_split_name!r} is not a query split of "
                f"splits_to_eval ({queries}): add it to dataset_dict/splits_to_eval or pass "
                "HookContainer(validation_split_name=...)."
            )
        metrics = tester.accuracy_calculator.get_curr_metrics()
        if re.sub(r"^AVERAGE_|_level\d+$", "", self.primary_metric) not in metrics:
            raise ValueError(
                f"primary_metric={self.primary_metric!r} is not computed by the tester's "
                f"AccuracyCalculator (it computes {metrics})."
            )

    def save_models_and_eval(
        self,
        trainer,
        dataset_dict,
        model_folder,
        test_interval,
        tester,
        splits_to_eval=None,
        collate_fn=None,
    ):
        """Tests this epoch (unless its accuracies are recorded already), saves the latest models
        (replacing those of the previous test) and, on a new best validation accuracy, the best
        ones. Returns the best epoch."""
        epoch = trainer.epoch
        self.run_tester_separately(
            tester,
            dataset_dict,
            epoch,
            trainer.models["trunk"],
            trainer.models.get("embedder"),
            splits_to_eval,
            collate_fn,
        )
        validation_table = self.table_of_query(
            tester, dataset_dict, splits_to_eval, self.validation_split_name
        )
        previous_best, _ = self.best_epoch_and_accuracy_in(validation_table, (-1, epoch))
        best_epoch, _ = self.best_epoch_and_accuracy_in(validation_table)
        self.save_models(trainer, model_folder, epoch, epoch - test_interval)
        if best_epoch == epoch:
            previous = None if previous_best is None else f"best{previous_best}"
            self.save_models(trainer, model_folder, f"best{epoch}", previous)
        return best_epoch

    def patience_remaining(self, epoch, best_epoch, patience):
        if patience is None or best_epoch is None:
            return True
        if epoch - best_epoch > patience:
            c_f.LOGGER.info(
                f"Validation accuracy has plateaued for {epoch - best_epoch} epochs "
                f"(patience {patience}): stopping."
            )
            return False
        return True

    def run_tester_separately(
        self,
        tester,
        dataset_dict,
        epoch,
        trunk,
        embedder,
        splits_to_eval=None,
        collate_fn=None,
        skip_eval_if_already_done=True,
    ):
        """Tests the (query, references) pairs of splits_to_eval; with skip_eval_if_already_done,
        only those with no accuracies recorded for this epoch (a resumed run does not test an
        epoch twice). Returns whether the tester ran."""
        if skip_eval_if_already_done:
            splits_to_eval = self.get_splits_to_eval(tester, dataset_dict, epoch, splits_to_eval)
            if not splits_to_eval:
                c_f.LOGGER.info(f"Epoch {epoch} has been evaluated already.")
                return False
        tester.test(dataset_dict, epoch, trunk, embedder, splits_to_eval, collate_fn)
        return True

    def get_splits_to_eval(self, tester, dataset_dict, epoch, input_splits_to_eval):
        """The (query split, reference splits) pairs with no accuracies recorded for `epoch`."""
        return [
            (query, references)
            for query, references in tester.check_splits_to_eval(dataset_dict, input_splits_to_eval)
            if not self.rows_of_epoch(self.group_name(tester, query, references), epoch)
        ]

    # ---- test records ----

    def end_of_testing_hook(self, tester):
        """The tester's hook: records each split's accuracies at its epoch, with the best epoch
        and best primary-metric accuracy so far (epoch -1, a test outside training, never counts
        as best)."""
        for split_name, accuracies in tester.all_accuracies.items():
            table = self.record_group_name(tester, split_name)
            epoch = accuracies["epoch"]
            best_epoch, best_accuracy = self.best_epoch_and_accuracy_in(table, (-1, epoch))
            current = self.get_curr_primary_metric(tester, split_name)
            if epoch != -1 and is_improvement(current, best_epoch, best_accuracy):
                best_epoch, best_accuracy = epoch, current
            record = {**accuracies, "best_epoch": best_epoch, "best_accuracy": best_accuracy}
            self.record_keeper.update_records(record, epoch, parent_name=table)
        self.record_keeper.save_records()
        if self.record_keeper.tensorboard_writer is not None:
            self.record_keeper.tensorboard_writer.flush()  # a test's results show up at once

    def is_new_best_accuracy(self, tester, split_name, epoch):
        """(is new best, current accuracy, best epoch, best accuracy): whether the tester's current
        primary metric beats every one recorded for the split (epoch -1 aside)."""
        current = self.get_curr_primary_metric(tester, split_name)
        best_epoch, best_accuracy = self.get_best_epoch_and_accuracy(tester, split_name)
        if is_improvement(current, best_epoch, best_accuracy):
            return True, current, epoch, current
        return False, current, best_epoch, best_accuracy

    def base_record_group_name(self, tester):
        base = tester.description_suffixes("accuracies")
        prefix = self.record_group_name_prefix
        return base if prefix is None else f"{prefix}_{base}"

    def record_group_name(self, tester, split_name):
        """The table of a split as the tester last evaluated it (its reference splits)."""
        return self.group_name(tester, split_name, tester.reference_split_names[split_name])

    def group_name(self, tester, query, references):
        if list(references) == [query]:
            evaluated_against = "self"
        else:
            evaluated_against = "_and_".join(name.upper() for name in sorted(references))
        return f"{self.base_record_group_name(tester)}_{query.upper()}_vs_{evaluated_against}"

    def table_of_query(self, tester, dataset_dict, splits_to_eval, query):
        references = dict(tester.check_splits_to_eval(dataset_dict, splits_to_eval))[query]
        return self.group_name(tester, query, references)

    # ---- reading records back ----

    def get_loss_history(self, loss_names=()):
        """{loss name: [values]} (and "~iteration~" when no loss_names are given)."""
        history = self.table_as_dict("loss_histories")
        if loss_names:
            return {name: history[name] for name in loss_names if name in history}
        return history

    def get_accuracy_history(self, tester, split_name, return_all_metrics=False, metrics=()):
        """{"epoch": [...], <primary metric column>: [...]}; every column with
        return_all_metrics; "epoch" and the columns of `metrics` ("AMI" -> "AMI_level0") else."""
        table = self.record_group_name(tester, split_name)
        history = self.table_as_dict(table)
        if return_all_metrics or not history:
            return history
        keys = [self.column_of(table, m) for m in metrics] or [self.primary_column(table)]
        return {key: history[key] for key in ["epoch", *keys]}

    def get_curr_primary_metric(self, tester, split_name):
        accuracies = tester.all_accuracies[split_name]
        return self.try_primary_metric(tester, lambda key: accuracies[key])

    def try_keys(self, input_keys, tester, input_func):
        """input_func(key) for the first of input_keys it accepts (no KeyError)."""
        for key in input_keys:
            try:
                return input_func(key)
            except KeyError:
                continue
        raise KeyError(f"none of {list(input_keys)} is recorded for {type(tester).__name__}.")

    def try_primary_metric(self, tester, input_func):
        return self.try_keys(self.metric_keys(tester, self.primary_metric), tester, input_func)

    def metric_keys(self, tester, metric):
        """The names a metric can be recorded under, most specific first."""
        level = tester.label_hierarchy_level
        return [metric, f"AVERAGE_{metric}", f"{metric}_level{0 if level == 'all' else level}"]

    def get_accuracies_of_epoch(self, tester, split_name, epoch, select_all=True):
        """The recorded rows (sqlite3.Row) of `epoch`; [] when there are none."""
        return self.rows_of_epoch(self.record_group_name(tester, split_name), epoch, select_all)

    def get_accuracies_of_best_epoch(self, tester, split_name, select_all=True, ignore_epoch=(-1,)):
        """(rows, primary metric column) of the epochs with the best primary metric, earliest
        first, ignoring the epochs in ignore_epoch; ([], None) when nothing is recorded."""
        return self.best_rows(self.record_group_name(tester, split_name), ignore_epoch, select_all)

    def get_best_epoch_and_accuracy(self, tester, split_name, ignore_epoch=(-1,)):
        """(best epoch, its primary metric); (None, 0) when nothing is recorded."""
        return self.best_epoch_and_accuracy_in(
            self.record_group_name(tester, split_name), ignore_epoch
        )

    def best_epoch_and_accuracy_in(self, table, ignore_epoch=(-1,)):
        rows, key = self.best_rows(table, ignore_epoch)
        if not rows:
            return None, 0
        return rows[0]["epoch"], rows[0][key]

    def best_rows(self, group, ignore_epoch, select_all=True):
        table = self.stored_table(group)
        if not self.record_keeper.table_exists(table):
            return [], None
        key = self.primary_column(group)
        ignored = ", ".join("?" * len(ignore_epoch))
        columns = "*" if select_all else f"epoch, [{key}]"
        rows = self.record_keeper.query(
            f"SELECT {columns} FROM [{table}] WHERE epoch NOT IN ({ignored}) AND [{key}] = "
            f"(SELECT MAX([{key}]) FROM [{table}] WHERE epoch NOT IN ({ignored})) ORDER BY epoch",
            (*ignore_epoch, *ignore_epoch),
        )
        return rows, key

    def rows_of_epoch(self, group, epoch, select_all=True):
        table = self.stored_table(group)
        if not self.record_keeper.table_exists(table):
            return []
        columns = "*" if select_all else f"epoch, [{self.primary_column(group)}]"
        return self.record_keeper.query(
            f"SELECT {columns} FROM [{table}] WHERE epoch = ?", (epoch,)
        )

    def table_as_dict(self, group):
        table = self.stored_table(group)
        if not self.record_keeper.table_exists(table):
            return {}
        history = self.record_keeper.query(f"SELECT * FROM [{table}]", return_dict=True)
        history.pop("id", None)
        return history

    def column_of(self, group, metric):
        """The column a metric is recorded in: the metric itself, its AVERAGE_ over label
        levels, or its column of the (lowest) evaluated level."""
        table = self.stored_table(group)
        columns = [row["name"] for row in self.record_keeper.query(f"PRAGMA table_info([{table}])")]
        candidates = [metric, f"AVERAGE_{metric}"]
        candidates += sorted(c for c in columns if c.startswith(f"{metric}_level"))
        found = [key for key in candidates if key in columns]
        if not found:
            raise KeyError(f"{metric!r} is not recorded in {table} (columns: {columns}).")
        return found[0]

    def primary_column(self, group):
        return self.column_of(group, self.primary_metric)

    def stored_table(self, group):
        """The SQLite table of a record group: record-keeper shortens long names by hashing."""
        return hash_if_too_long(group)

    # ---- saving and loading models ----

    def saveable_objects(self, trainer):
        """(name, object with a state_dict) for every model, optimizer, lr scheduler, loss and
        miner of the trainer. A model wrapped in DataParallel is saved as it is (its keys start
        with "module."), as PML saves it, so PML's files and ours load into the same models."""
        for attribute in self.saveable_trainer_objects:
            for name, obj in (getattr(trainer, attribute, None) or {}).items():
                if hasattr(obj, "state_dict"):
                    yield name, obj

    def save_models(self, trainer, model_folder, curr_suffix, prev_suffix=None):
        """Writes `<name>_<curr_suffix>.pth` (each atomically), then deletes the files of
        prev_suffix."""
        if not self.do_save_models:
            return
        os.makedirs(model_folder, exist_ok=True)
        for name, obj in self.saveable_objects(trainer):
            path = os.path.join(model_folder, f"{name}_{curr_suffix}.pth")
            write_atomically(path, partial(torch.save, obj.state_dict()))
        if prev_suffix is not None and str(prev_suffix) != str(curr_suffix):
            for name, _ in self.saveable_objects(trainer):
                path = os.path.join(model_folder, f"{name}_{prev_suffix}.pth")
                if os.path.exists(path):
                    os.remove(path)

    def load_latest_saved_models(self, trainer, model_folder, device=None, best=False):
        """Loads the newest complete set of saved files (the best ones with best=True) into the
        trainer's objects and returns the epoch to resume from (1 when nothing is saved)."""
        names = [name for name, _ in self.saveable_objects(trainer)]
        epoch = self.latest_saved_epoch(model_folder, names, best)
        if epoch is None:
            c_f.LOGGER.info(f"No saved models in {model_folder}: starting from epoch 1.")
            return 1
        suffix = f"best{epoch}" if best else str(epoch)
        for name, obj in self.saveable_objects(trainer):
            path = os.path.join(model_folder, f"{name}_{suffix}.pth")
            obj.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        c_f.LOGGER.info(f"Loaded the models of epoch {epoch} from {model_folder}.")
        return epoch + 1

    def latest_saved_epoch(self, model_folder, names, best):
        """The newest epoch saved for every name (files of an interrupted save do not count)."""
        if not os.path.isdir(model_folder):
            return None
        epochs_by_name = {name: set() for name in names}
        for filename in os.listdir(model_folder):
            match = SAVED_FILE.match(filename)
            if match and match["name"] in epochs_by_name and bool(match["best"]) == best:
                epochs_by_name[match["name"]].add(int(match["epoch"]))
        complete = set.intersection(*epochs_by_name.values()) if names else set()
        return max(complete, default=None)
