"""The signal head's loss against torch's binary cross-entropy, event by event."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from caloreco.errors import InvalidDataError
from caloreco.losses.signal import signal_loss


def test_signal_loss_is_the_mean_over_events_of_each_events_bce() -> None:
    g = torch.Generator().manual_seed(0)
    n = 500
    signal = torch.rand(n, generator=g) * 0.98 + 0.01
    object_id = torch.randint(-1, 4, (n,), generator=g)
    batch = torch.randint(0, 3, (n,), generator=g) * 5  # unsorted, arbitrary labels
    got = signal_loss(signal, object_id, batch)
    y = (object_id >= 0).float()
    want = torch.stack([F.binary_cross_entropy(signal[batch == b], y[batch == b])
                        for b in batch.unique()]).mean()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(signal_loss(signal, object_id),
                               F.binary_cross_entropy(signal, y))
    # events count alike: a small event weighs as much as a large one
    small = batch == batch.unique()[0]
    assert not torch.isclose(got, F.binary_cross_entropy(signal, y))
    assert small.sum() < n


def test_signal_loss_gradient_and_limits() -> None:
    s = torch.tensor([0.9, 0.2, 0.0, 1.0], requires_grad=True)
    loss = signal_loss(s, torch.tensor([3, -1, -1, 0]))
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and torch.isfinite(s.grad).all()
    # hits classified right with certainty cost (almost) nothing
    assert signal_loss(torch.tensor([1.0, 0.0]), torch.tensor([0, -1])) < 1e-5
    assert signal_loss(torch.zeros(0), torch.zeros(0, dtype=torch.long)) == 0


def test_signal_loss_shape_errors() -> None:
    with pytest.raises(InvalidDataError, match=r"object_id must have shape \[3\]"):
        signal_loss(torch.rand(3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(InvalidDataError, match=r"signal must have shape \[N\]"):
        signal_loss(torch.rand(3, 1), torch.zeros(3, dtype=torch.long))
    with pytest.raises(InvalidDataError, match=r"batch must have shape \[3\]"):
        signal_loss(torch.rand(3), torch.zeros(3, dtype=torch.long), torch.zeros(4))
