"""BaseTrainer: the one training loop (library and runner share it), with PML's API.

`train(start_epoch, num_epochs)` runs, for each iteration: zero the gradients, get a batch (with
optional subset-batch mining), `calculate_loss` (the subclass's part), weight and sum the losses,
backward, clip, step the optimizers, call `end_of_iteration_hook(trainer)`, step the per-iteration
schedulers. At the end of each epoch it steps the per-epoch schedulers and calls
`end_of_epoch_hook(trainer)`; a hook returning exactly False stops training.

Our optional keyword-only additions (PML code never passes them, so it runs unchanged):
`mixed_precision` (autocast + GradScaler, CUDA only: on CPU autocast would change the numbers, not
the speed), `check_finite_loss` (one host sync per step, then an error before a NaN/Inf loss can
update anything), `accumulation_steps` (sum gradients over that many batches per update) and
`extra_loss_terms` ({name: callable(trainer, data, embeddings) -> scalar}: auxiliary terms, such
as a self-supervised loss, added to `losses` and weighted by `loss_weights` like the others).
"""

import contextlib
import math

import numpy as np
import torch

from ..utils import common_functions as c_f
from ..utils.errors import InvalidArgumentError
from ..utils.key_checker import KeyChecker, KeyCheckerDict
from ..utils.loss_tracker import TOTAL_LOSS, LossTracker

SCHEDULER_SUFFIXES = {
    "iteration": "_scheduler_by_iteration",
    "epoch": "_scheduler_by_epoch",
    "plateau": "_scheduler_by_plateau",
}


class NonFiniteLossError(FloatingPointError):
    """A loss was NaN or Inf; raised before the backward pass, so no weight has changed."""

    def __init__(self, epoch, iteration, losses):
        bad = {
            name: float(value.detach()) for name, value in losses.items() if torch.is_tensor(value)
        }
        super().__init__(
            f"non-finite loss at epoch {epoch}, iteration {iteration}: {bad}. The models were "
            "not updated; lower the learning rate, check the data for NaN/Inf, or use float64."
        )
        self.epoch, self.iteration, self.losses = epoch, iteration, bad


def schema_keys(suffixes):
    """Allowed keys that follow the schema's models and loss_funcs keys, e.g. trunk_optimizer."""

    def keys(key_checker, children):
        parts = children["models"].keys + children["loss_funcs"].keys
        return [part + suffix for suffix in suffixes for part in parts]

    return keys


def return_input(x):
    return x


def do_nothing(trainer):
    return None


class BaseTrainer:
    def __init__(
        self,
        models,
        optimizers,
        batch_size,
        loss_funcs,
        dataset,
        mining_funcs=None,
        iterations_per_epoch=None,
        data_device=None,
        dtype=None,
        loss_weights=None,
        sampler=None,
        collate_fn=None,
        lr_schedulers=None,
        gradient_clippers=None,
        freeze_these=(),
        freeze_trunk_batchnorm=False,
        label_hierarchy_level=0,
        dataloader_num_workers=2,
        data_and_label_getter=None,
        dataset_labels=None,
        set_min_label_to_zero=False,
        end_of_iteration_hook=None,
        end_of_epoch_hook=None,
        *,
        mixed_precision=False,
        check_finite_loss=False,
        accumulation_steps=1,
        pin_memory=False,
        extra_loss_terms=None,
    ):
        self.models = models
        self.optimizers = optimizers
        self.batch_size = batch_size
        self.loss_funcs = loss_funcs
        self.dataset = dataset
        self.mining_funcs = {} if mining_funcs is None else mining_funcs
        self.iterations_per_epoch = iterations_per_epoch
        self.data_device = data_device
        self.dtype = dtype
        self.loss_weights = loss_weights
        self.sampler = sampler
        self.collate_fn = collate_fn
        self.lr_schedulers = lr_schedulers
        self.gradient_clippers = {} if gradient_clippers is None else gradient_clippers
        self.freeze_these = freeze_these
        self.freeze_trunk_batchnorm = freeze_trunk_batchnorm
        self.label_hierarchy_level = label_hierarchy_level
        self.dataloader_num_workers = dataloader_num_workers
        self.data_and_label_getter = data_and_label_getter
        self.dataset_labels = dataset_labels
        self.set_min_label_to_zero = set_min_label_to_zero
        self.end_of_iteration_hook = end_of_iteration_hook
        self.end_of_epoch_hook = end_of_epoch_hook
        self.mixed_precision = mixed_precision
        self.check_finite_loss = check_finite_loss
        self.accumulation_steps = accumulation_steps
        self.pin_memory = pin_memory
        self.extra_loss_terms = {} if extra_loss_terms is None else dict(extra_loss_terms)
        self.epoch, self.iteration = 0, 0
        self.check_our_arguments()
        self.custom_setup()
        self.verify_dict_keys()
        self.initialize_models()
        self.initialize_data_device()
        self.initialize_label_mapper()
        self.initialize_loss_tracker()
        self.initialize_loss_weights()
        self.initialize_data_and_label_getter()
        self.initialize_hooks()
        self.initialize_lr_schedulers()
        self.initialize_grad_scaler()

    def custom_setup(self):
        """Subclasses set up extra state here, before the dict keys are checked."""

    def calculate_loss(self, curr_batch):
        raise TypeError(
            f"{type(self).__name__} computes no loss: use a trainer such as MetricLossOnly, or "
            "subclass BaseTrainer and fill self.losses in calculate_loss(curr_batch)."
        )

    def update_loss_weights(self):
        """Subclasses that change loss weights during training (e.g. by phase) do it here."""

    # ----------------------------------------------------------------------------- the loop
    def train(self, start_epoch=1, num_epochs=1):
        self.initialize_dataloader()
        for epoch in range(start_epoch, num_epochs + 1):
            self.epoch = epoch
            self.set_to_train()
            c_f.LOGGER.info(f"TRAINING EPOCH {self.epoch}")
            for iteration in range(self.iterations_per_epoch):
                self.iteration = iteration
                self.train_one_iteration()
            self.zero_losses()
            self.step_lr_schedulers(end_of_epoch=True)
            if self.end_of_epoch_hook(self) is False:
                break

    def train_one_iteration(self):
        starts_window = self.iteration % self.accumulation_steps == 0
        ends_window = (self.iteration + 1) % self.accumulation_steps == 0 or (
            self.iteration + 1 == self.iterations_per_epoch
        )
        if starts_window:
            self.zero_grad()
        self.forward_and_backward()
        if ends_window:
            self.clip_gradients()
            self.step_optimizers()
        self.end_of_iteration_hook(self)
        if ends_window:
            self.step_lr_schedulers(end_of_epoch=False)

    def forward_and_backward(self):
        self.zero_losses()
        self.update_loss_weights()
        with self.autocast():
            self.calculate_loss(self.get_batch())
        self.loss_tracker.update(self.loss_weights)
        self.backward()

    def autocast(self):
        if self.autocast_enabled:
            return torch.autocast(self.data_device.type)
        return contextlib.nullcontext()

    def backward(self):
        total_loss = self.losses[TOTAL_LOSS]
        if not torch.is_tensor(total_loss):
            raise ValueError(
                f"no loss was computed at epoch {self.epoch}, iteration {self.iteration}: "
                f"loss_funcs has {sorted(self.loss_funcs)} and loss_weights {self.loss_weights}. "
                "Give the loss this trainer needs and a non-zero weight."
            )
        if self.check_finite_loss and not math.isfinite(total_loss.item()):  # the one sync
            raise NonFiniteLossError(self.epoch, self.iteration, self.losses)
        if self.accumulation_steps > 1:
            total_loss = total_loss / self.accumulation_steps
        self.grad_scaler.scale(total_loss).backward()

    def zero_losses(self):
        for name in self.losses:
            self.losses[name] = 0

    def zero_grad(self):
        """Through the optimizers only: Module.zero_grad walks every submodule, which costs a
        few percent of a small model's step; parameters no optimizer steps never change."""
        for optimizer in self.optimizers.values():
            optimizer.zero_grad()

    def clip_gradients(self):
        if self.gradient_clippers:
            for optimizer in self.optimizers.values():
                self.grad_scaler.unscale_(optimizer)
        for clipper in self.gradient_clippers.values():
            clipper()

    def step_optimizers(self):
        for optimizer in self.optimizers.values():
            self.step_optimizer(optimizer)
        self.grad_scaler.update()

    def step_optimizer(self, optimizer):
        """An enabled GradScaler refuses an optimizer without gradients (a frozen model's), so
        that one is skipped; a disabled scaler just calls optimizer.step()."""
        if self.grad_scaler.is_enabled() and not any(
            p.grad is not None for group in optimizer.param_groups for p in group["params"]
        ):
            return
        self.grad_scaler.step(optimizer)

    def get_global_iteration(self):
        return self.iteration + (self.epoch - 1) * self.iterations_per_epoch

    def step_lr_schedulers(self, end_of_epoch=False):
        suffix = SCHEDULER_SUFFIXES["epoch" if end_of_epoch else "iteration"]
        for name, scheduler in self.lr_schedulers.items():
            if name.endswith(suffix):
                scheduler.step()

    def step_lr_plateau_schedulers(self, validation_info):
        for name, scheduler in self.lr_schedulers.items():
            if name.endswith(SCHEDULER_SUFFIXES["plateau"]):
                scheduler.step(validation_info)

    # ----------------------------------------------------------------------------- the batch
    def initialize_dataloader(self):
        c_f.LOGGER.info("Initializing dataloader")
        self.dataloader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=int(self.batch_size),
            sampler=self.sampler,
            drop_last=True,
            num_workers=self.dataloader_num_workers,
            collate_fn=self.collate_fn,
            shuffle=self.sampler is None,
            pin_memory=self.pin_memory,
            # Workers outlive each pass over the data: image datasets keep their decoders warm
            # instead of restarting every worker at every epoch.
            persistent_workers=self.dataloader_num_workers > 0,
        )
        if self.iterations_per_epoch is None:
            self.iterations_per_epoch = len(self.dataloader)
        self.dataloader_iter = iter(self.dataloader)

    def next_batch(self):
        """The next batch, starting a new pass (new shuffle) when the loader is exhausted."""
        try:
            return next(self.dataloader_iter)
        except StopIteration:
            self.dataloader_iter = iter(self.dataloader)
            return next(self.dataloader_iter)

    def get_batch(self):
        data, labels = self.data_and_label_getter(self.next_batch())
        labels = self.to_data_device(self.process_labels(labels))
        return self.maybe_do_batch_mining(data, labels)

    def process_labels(self, labels):
        if self.label_mapper is not None:
            return self.label_mapper(labels)
        labels = torch.as_tensor(labels)
        return labels[:, self.label_hierarchy_level] if labels.ndim > 1 else labels

    def to_data_device(self, x, dtype=None):
        if c_f.is_list_or_tuple(x):
            return type(x)(self.to_data_device(y, dtype) for y in x)
        return x.to(self.data_device, dtype=dtype, non_blocking=self.pin_memory)

    def maybe_do_batch_mining(self, data, labels):
        """A subset-batch miner picks, from embeddings computed in eval mode without gradients,
        the samples that the training step then uses."""
        if "subset_batch_miner" not in self.mining_funcs:
            return data, labels
        with torch.no_grad():
            self.set_to_eval()
            embeddings = self.compute_embeddings(data)
            indices = self.mining_funcs["subset_batch_miner"](embeddings, labels)
            self.set_to_train()
        return data[indices.to(data.device)], labels[indices]

    def compute_embeddings(self, data):
        return self.get_final_embeddings(self.get_trunk_output(data))

    def get_trunk_output(self, data):
        return self.models["trunk"](self.to_data_device(data, self.dtype))

    def get_final_embeddings(self, base_output):
        return self.models["embedder"](base_output)

    def maybe_mine_embeddings(self, embeddings, labels):
        if "tuple_miner" in self.mining_funcs:
            return self.mining_funcs["tuple_miner"](embeddings, labels)
        return None

    # ----------------------------------------------------------------------------- modes
    def trainable_attributes(self):
        return [self.models, self.loss_funcs]

    def set_to_train(self):
        for part in self.trainable_attributes():
            for name, module in part.items():
                module.train(name not in self.freeze_these)
        self.maybe_freeze_trunk_batchnorm()

    def set_to_eval(self):
        for part in self.trainable_attributes():
            for module in part.values():
                module.eval()

    def maybe_freeze_trunk_batchnorm(self):
        """Frozen batchnorm = running statistics kept (eval mode); its affine weights still train."""
        if self.freeze_trunk_batchnorm:
            for module in self.models["trunk"].modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    # ----------------------------------------------------------------------------- setup
    def check_our_arguments(self):
        if not (isinstance(self.accumulation_steps, int) and self.accumulation_steps >= 1):
            raise InvalidArgumentError(
                f"accumulation_steps must be an int >= 1, got {self.accumulation_steps!r}."
            )
        if self.set_min_label_to_zero and self.dataset_labels is None:
            raise InvalidArgumentError(
                "set_min_label_to_zero=True needs dataset_labels (every label of the dataset)."
            )

    def initialize_models(self):
        if "embedder" not in self.models:
            self.models["embedder"] = torch.nn.Identity()
        for part in self.trainable_attributes():
            for name in self.freeze_these:
                if name in part:
                    part[name].requires_grad_(False)
                    if f"{name}_optimizer" in self.optimizers:
                        c_f.LOGGER.warning(
                            f"You have passed in an optimizer for {name}, but are freezing its parameters."
                        )

    def initialize_data_device(self):
        if self.data_device is None:
            self.data_device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.data_device = torch.device(self.data_device)

    def initialize_label_mapper(self):
        """With set_min_label_to_zero, labels (ints or strings) become their rank among the
        dataset's labels of the chosen hierarchy level."""
        if not self.set_min_label_to_zero:
            self.label_mapper = None
            return
        dataset_labels = np.asarray(self.dataset_labels)
        if dataset_labels.ndim > 1:
            dataset_labels = dataset_labels[:, self.label_hierarchy_level]
        sorted_labels = np.unique(dataset_labels)

        def label_mapper(labels):
            labels = np.asarray(c_f.to_numpy(labels) if torch.is_tensor(labels) else labels)
            if labels.ndim > 1:
                labels = labels[:, self.label_hierarchy_level]
            return torch.from_numpy(np.searchsorted(sorted_labels, labels)).long()

        self.label_mapper = label_mapper

    def tracked_loss_names(self):
        return [*self.loss_funcs, *self.extra_loss_terms]

    def add_extra_loss_terms(self, data, embeddings):
        """Each auxiliary term whose weight is positive, on the batch's data and embeddings."""
        for name, term in self.extra_loss_terms.items():
            if self.loss_weights.get(name, 0) > 0:
                self.losses[name] = term(self, data, embeddings)

    def initialize_loss_tracker(self):
        self.loss_tracker = LossTracker(self.tracked_loss_names())
        self.loss_names = list(self.loss_tracker.losses)
        self.losses = self.loss_tracker.losses

    def initialize_loss_weights(self):
        if self.loss_weights is None:
            self.loss_weights = {name: 1 for name in self.loss_names}

    def initialize_data_and_label_getter(self):
        if self.data_and_label_getter is None:
            self.data_and_label_getter = return_input

    def initialize_hooks(self):
        if self.end_of_iteration_hook is None:
            self.end_of_iteration_hook = do_nothing
        if self.end_of_epoch_hook is None:
            self.end_of_epoch_hook = do_nothing

    def initialize_lr_schedulers(self):
        if self.lr_schedulers is None:
            self.lr_schedulers = {}
        self.allowed_lr_scheduler_key_suffixes = dict(SCHEDULER_SUFFIXES)

    def initialize_grad_scaler(self):
        self.autocast_enabled = bool(self.mixed_precision) and self.data_device.type == "cuda"
        self.grad_scaler = torch.amp.GradScaler(
            self.data_device.type, enabled=self.autocast_enabled
        )

    def set_schema(self):
        self.schema = KeyCheckerDict(
            {
                "models": KeyChecker(["trunk", "embedder"], essential=["trunk"]),
                "loss_funcs": KeyChecker(["metric_loss"]),
                "mining_funcs": KeyChecker(
                    ["subset_batch_miner", "tuple_miner"], warn_empty=False, important=[]
                ),
                "loss_weights": KeyChecker(
                    lambda s, d: [*d["loss_funcs"].keys, *self.extra_loss_terms],
                    warn_empty=False,
                    important=[],
                    essential=lambda s, d: d["loss_funcs"].keys,
                ),
                "optimizers": KeyChecker(
                    schema_keys(["_optimizer"]),
                    important=[f"{name}_optimizer" for name in self.models],
                ),
                "lr_schedulers": KeyChecker(
                    schema_keys(list(SCHEDULER_SUFFIXES.values())), warn_empty=False, important=[]
                ),
                "gradient_clippers": KeyChecker(
                    schema_keys(["_grad_clipper"]), warn_empty=False, important=[]
                ),
            }
        )

    def modify_schema(self):
        """Subclasses change the allowed/essential keys of `self.schema.children` here."""

    def verify_dict_keys(self):
        self.set_schema()
        self.modify_schema()
        self.schema.verify(self)
        self.verify_freeze_these_keys()

    def verify_freeze_these_keys(self):
        allowed = self.schema.children["models"].keys + self.schema.children["loss_funcs"].keys
        unknown = [name for name in self.freeze_these if name not in allowed]
        if unknown:
            raise InvalidArgumentError(
                f"freeze_these keys must be one of {', '.join(allowed)}; got unknown "
                f"{', '.join(repr(k) for k in unknown)}."
            )
