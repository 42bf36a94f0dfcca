"""TrainWithClassifier: both losses train their parts, a zero weight skips the classifier, and
it matches PML's TrainWithClassifier step for step (float64)."""

import pytest
import torch

from metric_runner import losses
from metric_runner.trainers import TrainWithClassifier
from tests.trainers.helpers import EMBED, assert_same_run, build, run_recorded, train


def parts(classifier_weight=1.0):
    return dict(
        extra_models={"classifier": lambda: torch.nn.Linear(EMBED, 4)},
        loss_funcs={
            "metric_loss": losses.TripletMarginLoss(margin=0.2),
            "classifier_loss": torch.nn.CrossEntropyLoss(),
        },
        loss_weights={"metric_loss": 1.0, "classifier_loss": classifier_weight},
    )


@pytest.mark.parametrize("classifier_weight", [0.5, 0.0])
def test_matches_pml_train_with_classifier(pml_trainers, classifier_weight):
    theirs = run_recorded(pml_trainers.TrainWithClassifier, **parts(classifier_weight))
    ours = run_recorded(TrainWithClassifier, **parts(classifier_weight))
    assert_same_run(ours, theirs)


def test_classifier_loss_decreases_and_classifier_steps():
    recorder, trainer = run_recorded(TrainWithClassifier, num_epochs=6, **parts())
    per_epoch = torch.tensor(recorder.losses("classifier_loss")).view(6, -1).mean(dim=1)
    assert per_epoch[-1] < 0.7 * per_epoch[0]
    assert trainer.optimizers["classifier_optimizer"].state  # Adam state exists: it stepped


def test_zero_classifier_weight_leaves_the_classifier_untouched():
    trainer = build(TrainWithClassifier, **parts(classifier_weight=0.0))
    before = trainer.models["classifier"].weight.clone()
    seen = []
    trainer.end_of_iteration_hook = lambda t: seen.append(t.losses["classifier_loss"])
    train(trainer, num_epochs=1)
    assert torch.equal(trainer.models["classifier"].weight, before)
    assert seen == [0] * len(seen)


def test_classifier_keys_are_allowed_and_checked():
    arguments = parts()
    arguments["loss_funcs"]["cls_loss"] = torch.nn.CrossEntropyLoss()
    with pytest.raises(
        AssertionError, match="loss_funcs keys must be one of metric_loss, classifier_loss"
    ):
        build(TrainWithClassifier, **arguments)
