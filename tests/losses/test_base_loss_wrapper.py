import pytest

from metric_runner.losses import BaseLossWrapper, ContrastiveLoss, TripletMarginLoss


class OnlyContrastive(BaseLossWrapper):
    @staticmethod
    def supported_losses():
        return ["ContrastiveLoss"]


def test_wraps_a_supported_loss_or_a_subclass_of_one():
    class MyContrastive(ContrastiveLoss):
        pass

    assert isinstance(OnlyContrastive(ContrastiveLoss()).loss, ContrastiveLoss)
    assert isinstance(OnlyContrastive(MyContrastive()).loss, MyContrastive)
    OnlyContrastive.check_loss_support("ContrastiveLoss")


def test_rejects_other_losses_by_name():
    with pytest.raises(
        ValueError,
        match="OnlyContrastive does not support TripletMarginLoss; wrap one of: ContrastiveLoss",
    ):
        OnlyContrastive(TripletMarginLoss())
    with pytest.raises(ValueError, match="does not support NTXentLoss"):
        OnlyContrastive.check_loss_support("NTXentLoss")


def test_base_class_lists_no_losses():
    with pytest.raises(NotImplementedError):
        BaseLossWrapper(ContrastiveLoss())
