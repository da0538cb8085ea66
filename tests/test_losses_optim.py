"""Losses by name (ignore pixels, weights, combination), optimizers, schedules, warmup and SWA."""
from __future__ import annotations

import math

import pytest
import torch

from playerseg.classes import IGNORE_INDEX
from playerseg.losses import LOSSES, LossConfig, build_loss
from playerseg.optim import (OPTIMIZERS, SCHEDULERS, SWA, OptimConfig, SchedConfig, SWAConfig, build_optimizer,
                             build_scheduler)


def _target():
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 3, (2, 16, 16), generator=g)
    t[:, :4] = IGNORE_INDEX
    return t


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_prefers_the_truth_and_skips_ignored_pixels(name):
    fn = build_loss(LossConfig(terms={name: 1.0}), 3)
    t = _target()
    good = torch.nn.functional.one_hot(t.clamp(max=2), 3).permute(0, 3, 1, 2).float() * 8 - 4
    bad = -good
    assert fn(good, t)[0] < fn(bad, t)[0]
    other = good.clone()
    other[:, :, :4] = torch.randn_like(other[:, :, :4]) * 10  # logits of ignored pixels change
    assert torch.isclose(fn(good, t)[0], fn(other, t)[0], atol=1e-5)


def test_combination_is_the_weighted_sum_of_its_terms():
    t = _target()
    x = torch.randn(2, 3, 16, 16)
    total, parts = build_loss(LossConfig(terms={"ce": 0.5, "dice": 2.0, "lovasz": 1.0}), 3)(x, t)
    assert set(parts) == {"ce", "dice", "lovasz"}
    assert math.isclose(float(total), 0.5 * parts["ce"] + 2.0 * parts["dice"] + parts["lovasz"], rel_tol=1e-5)


def test_class_weights_change_the_loss_and_are_checked():
    t, x = _target(), torch.randn(2, 3, 16, 16)
    plain = build_loss(LossConfig(terms={"ce": 1.0}), 3)(x, t)[0]
    weighted = build_loss(LossConfig(terms={"ce": 1.0}, class_weights=[0.1, 5.0, 1.0]), 3)(x, t)[0]
    assert not torch.isclose(plain, weighted)
    with pytest.raises(ValueError, match="3 classes"):
        build_loss(LossConfig(class_weights=[1.0, 2.0]), 3)
    with pytest.raises(ValueError, match="nope"):
        build_loss(LossConfig(terms={"nope": 1.0}), 3)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_optimizer_descends(name):
    p = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    opt = build_optimizer(OptimConfig(name=name, lr=0.05, weight_decay=0.0), [p])
    for _ in range(50):
        opt.zero_grad()
        (p ** 2).sum().backward()
        opt.step()
    assert float((p ** 2).sum()) < 13.0 * 0.5


def _lrs(cfg, steps_per_epoch=10, epochs=5, metric=0.5):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer(OptimConfig(lr=1.0), [p])
    sched = build_scheduler(cfg, opt, steps_per_epoch, epochs)
    out = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            out.append(sched.lr)
            opt.step()
            sched.step()
        sched.epoch_end(metric)
    return out, sched, opt


def test_schedules():
    lrs, _, _ = _lrs(SchedConfig(name="cosine", warmup_epochs=1, warmup_start=0.1, min_lr_ratio=0.01))
    assert lrs[0] == pytest.approx(0.1) and lrs[:10] == sorted(lrs[:10])  # linear warmup
    assert max(lrs) == pytest.approx(1.0) and lrs[-1] < 0.02 and lrs[10:] == sorted(lrs[10:], reverse=True)
    lrs, _, _ = _lrs(SchedConfig(name="step", warmup_epochs=0, step_epochs=2, gamma=0.5))
    assert lrs[0] == lrs[19] == 1.0 and lrs[20] == pytest.approx(0.5) and lrs[40] == pytest.approx(0.25)
    lrs, _, _ = _lrs(SchedConfig(name="onecycle", pct_start=0.3))
    assert lrs[0] < 0.1 and max(lrs) == pytest.approx(1.0, rel=0.05) and lrs[-1] < 0.01
    lrs, _, _ = _lrs(SchedConfig(name="plateau", warmup_epochs=0, patience=0, gamma=0.5), epochs=4)
    assert lrs[-1] < lrs[0]  # a flat metric reduces the lr
    lrs, _, _ = _lrs(SchedConfig(name="linear", warmup_epochs=0, min_lr_ratio=0.0))
    assert lrs[0] == 1.0 and lrs[25] == pytest.approx(0.5, abs=0.03)
    assert set(SCHEDULERS) >= {"cosine", "onecycle", "step", "plateau", "linear", "constant"}


def test_scheduler_state_round_trip():
    cfg = SchedConfig(name="cosine", warmup_epochs=1)
    _, sched, opt = _lrs(cfg, epochs=2)
    p = torch.nn.Parameter(torch.zeros(1))
    opt2 = build_optimizer(OptimConfig(lr=1.0), [p])
    sched2 = build_scheduler(cfg, opt2, 10, 2)
    sched2.load_state_dict(sched.state_dict())
    assert sched2.steps == sched.steps == 20 and sched2.lr == pytest.approx(sched.lr)
    sched.step(), sched2.step()
    assert sched2.lr == pytest.approx(sched.lr)


def test_swa_averages_weights_and_updates_batchnorm():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    opt = build_optimizer(OptimConfig(name="sgd", lr=0.1), model.parameters())
    swa = SWA(SWAConfig(enabled=True, start_epoch=0.5, lr=0.05), model, opt, epochs=4)
    snapshots = []
    for epoch in range(4):
        with torch.no_grad():
            model[0].weight.add_(1.0)
        swa.epoch_end(model, epoch)
        if swa.active(epoch):
            snapshots.append(model[0].weight.detach().clone())
    assert swa.start == 2 and len(snapshots) == 2
    assert torch.allclose(swa.averaged.module[0].weight, torch.stack(snapshots).mean(0))
    data = [(torch.randn(4, 3, 8, 8) * 3 + 5, None) for _ in range(3)]
    averaged = swa.finalize(data, torch.device("cpu"))
    assert not torch.allclose(averaged[1].running_mean, torch.zeros(4))


def test_centre_loss_puts_peaks_at_box_centres_only_where_the_boxes_are_complete():
    """A tiny network with a centre channel, fit on two bright people boxed in image 0 (their
    source boxes every player) and one unboxed bright person in image 1 (a source that does not):
    P(centre) peaks at the two box centres of image 0; image 1 adds nothing to the loss."""
    from playerseg.losses import PartialLabelLoss, centre_targets

    t = centre_targets(torch.tensor([[1.0, 4, 2, 10, 20], [2.0, 0, 0, 5, 5]]), 1, 24, 24, 0.15)
    assert t.shape == (24, 24) and t[11, 7] == 1.0 and (t == 1.0).sum() == 1  # class 2's box ignored
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 5, padding=2), torch.nn.ReLU(),
                              torch.nn.Conv2d(16, 16, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv2d(16, 4, 1))
    x = torch.zeros(2, 3, 32, 32)
    x[0, :, 4:12, 4:8] = 1.0  # people smaller than the network's 9 x 9 view
    x[0, :, 16:24, 20:24] = 1.0
    x[1, :, 4:12, 14:18] = 1.0
    allowed = torch.full((2, 32, 32), 7, dtype=torch.uint8)
    boxes = [torch.tensor([[1.0, 4, 4, 8, 12], [1.0, 20, 16, 24, 24]]), torch.zeros(0, 5)]
    known = torch.tensor([True, False])
    loss_fn = PartialLabelLoss(LossConfig(partial=0.0, box_projection=0.0, centre=1.0), 3, centre_class=1)
    _, parts = loss_fn(net(x), allowed, boxes, None, known)
    _, alone = loss_fn(net(x)[:1], allowed[:1], boxes[:1], None, known[:1])
    assert parts["centre"] == pytest.approx(alone["centre"], rel=1e-5)  # image 1 is not scored
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(200):
        opt.zero_grad()
        loss, parts = loss_fn(net(x), allowed, boxes, None, known)
        loss.backward()
        opt.step()
    p = net(x)[0, 3].sigmoid().detach()
    for cy, cx in ((8, 6), (20, 22)):  # the centres' pixels
        window = p[cy - 1 : cy + 2, cx - 1 : cx + 2]
        assert window.max() > 0.3 and window.max() == p[cy - 4 : cy + 5, cx - 4 : cx + 5].max()
    far = p.clone()
    far[3:13, 3:9] = 0
    far[15:25, 19:25] = 0
    assert far.max() < 0.2
