"""The runner's behaviour on the trainer's hooks, one small callback per module. Add your own
with the `callbacks:` config key (`_target_:` blocks of Callback subclasses)."""

from .checkpointing import Checkpointing
from .component_stats import ComponentStats
from .early_stopping import EarlyStopping
from .evaluation import Evaluation
from .hooks import Callback, TrainerHooks
from .learning_rates import LearningRates
from .metrics_log import MetricsLog
from .plateau_scheduler import PlateauScheduler
from .progress_bar import ProgressBar
from .record_keeper_log import RecordKeeperLog
from .self_supervised_term import SelfSupervisedTerm
from .tensorboard_log import TensorBoardLog
from .training_loss import TrainingLoss
