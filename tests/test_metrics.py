"""The metric maths on scores whose answers are known by hand."""

import math

import pytest
import torch

from sfcli.metrics import accuracy, average_precision, confusion_matrix, mean_average_precision

CLASSES = ["a", "b", "c"]


def one_hot_scores(predicted, classes=3):
    return torch.eye(classes)[torch.tensor(predicted)]


def test_confusion_rows_are_true_classes_and_columns_top1():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    confusion = confusion_matrix(one_hot_scores([0, 1, 1, 1, 0, 2]), labels, CLASSES)
    assert confusion.counts.tolist() == [[1, 2, 0], [1, 1, 0], [0, 0, 1]]
    assert confusion.to_csv().splitlines() == ["true \\ predicted,a,b,c", "a,1,2,0", "b,1,1,0", "c,0,0,1"]
    pairs = confusion.most_confused(2)
    assert [(p.true, p.predicted, p.videos) for p in pairs] == [("a", "b", 2), ("b", "a", 1)]
    assert pairs[0].share == pytest.approx(66.67)
    assert [CLASSES[i] for i in confusion.order()] == ["a", "b", "c"]  # 33%, 50%, 100% right


def test_precision_recall_f1_and_mean_class_accuracy():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    acc = accuracy(one_hot_scores([0, 1, 1, 1, 0, 2]), labels, CLASSES)
    assert acc.top1 == pytest.approx(50.0) and acc.top5 == 100.0
    a, b, c = acc.per_class
    assert (a.videos, a.top1, a.precision) == (3, pytest.approx(33.33), pytest.approx(50.0))
    assert a.f1 == pytest.approx(100 * 2 * 0.5 * (1 / 3) / (0.5 + 1 / 3), abs=0.01)
    assert (b.top1, b.precision) == (pytest.approx(50.0), pytest.approx(33.33))
    assert (c.top1, c.precision, c.f1) == (100.0, 100.0, 100.0)
    assert acc.mean_class_accuracy == pytest.approx((100 / 3 + 50 + 100) / 3, abs=0.01)


def test_a_class_never_seen_or_never_predicted_has_no_rate():
    acc = accuracy(one_hot_scores([0, 0]), torch.tensor([0, 1]), CLASSES)
    a, b, c = acc.per_class
    assert b.precision is None and b.top1 == 0.0 and b.f1 == 0.0  # never predicted
    assert c.videos == 0 and c.top1 is None and c.f1 is None  # never seen
    assert acc.mean_class_accuracy == 50.0  # over a and b only


def test_average_precision_by_hand():
    scores = torch.tensor([[0.9], [0.8], [0.7], [0.6]])
    targets = torch.tensor([[1], [0], [1], [0]])
    assert float(average_precision(scores, targets)[0]) == pytest.approx((1 + 2 / 3) / 2)
    assert math.isnan(float(average_precision(scores, torch.zeros(4, 1))[0]))


def test_map_of_perfect_and_of_shuffled_scores():
    generator = torch.Generator().manual_seed(0)
    targets = (torch.rand(400, 5, generator=generator) < 0.2).long()
    targets[0] = 1  # every class has a positive
    perfect = targets.float() + 0.01 * torch.rand(400, 5, generator=generator)
    assert mean_average_precision(perfect, targets) == 100.0
    shuffled = perfect[torch.randperm(400, generator=generator)]
    prevalence = 100 * float(targets.float().mean())
    assert abs(mean_average_precision(shuffled, targets) - prevalence) < 8  # chance: the share of positives
