"""VisitedStates, the DAgger aggregate: joining keeps order, fields and the subclass."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sigma_core.train import VisitedStates


def _states(n: int, start: float) -> VisitedStates:
    images = torch.full((n, 2, 1, 3, 4, 4), start, dtype=torch.float16)
    state = torch.arange(n, dtype=torch.float32)[:, None].expand(n, 6) + start
    return VisitedStates(images, state, state[:, :1].repeat(1, 20))


def test_adding_concatenates_every_field_in_order() -> None:
    a, b = _states(2, 0.0), _states(3, 10.0)
    both = a + b
    assert type(both) is VisitedStates and len(both) == 5
    assert both.images.dtype == torch.float16  # recorded half precision is kept
    assert torch.equal(both.state[:, 0], torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0]))
    assert torch.equal(both.images[2:], b.images) and torch.equal(both.truth[:2], a.truth)


@dataclass
class _WithText(VisitedStates):
    texts: list[str]
    memory: Tensor


def test_a_subclass_joins_its_own_fields_and_stays_itself() -> None:
    a, b = _states(1, 0.0), _states(2, 5.0)
    x = _WithText(a.images, a.state, a.truth, ["red"], torch.zeros(1, 8))
    y = _WithText(b.images, b.state, b.truth, ["blue", "green"], torch.ones(2, 8))
    both = x + y
    assert type(both) is _WithText and len(both) == 3
    assert both.texts == ["red", "blue", "green"]
    assert torch.equal(both.memory.sum(1), torch.tensor([0.0, 8.0, 8.0]))
    assert x.texts == ["red"]  # the operands are not changed
