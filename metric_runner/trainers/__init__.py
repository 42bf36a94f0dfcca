"""Trainers: the training loop with PML's API (`trainer.train(start_epoch, num_epochs)`)."""

from .base_trainer import BaseTrainer, NonFiniteLossError
from .cascaded_embeddings import CascadedEmbeddings
from .deep_adversarial_metric_learning import DeepAdversarialMetricLearning
from .metric_loss_only import MetricLossOnly
from .train_with_classifier import TrainWithClassifier
from .two_stream_metric_loss import TwoStreamMetricLoss
