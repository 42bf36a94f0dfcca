"""The configuration-driven runner behind `metric-run`: registries, train/test workflows,
checkpoints and run logs. Register your own components with the decorators below."""

from .registry import (
    ConfigError,
    register_dataset,
    register_distance,
    register_loss,
    register_miner,
    register_model,
    register_optimizer,
    register_reducer,
    register_regularizer,
    register_sampler,
    register_scheduler,
    register_tester,
    register_trainer,
)
