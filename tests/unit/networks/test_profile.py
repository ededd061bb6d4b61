"""Network cost measurements."""

from __future__ import annotations

import pytest
from torch import nn

from nerveseg.networks.profile import count_parameters, forward_flops, forward_latency


def test_parameters_and_flops_of_a_convolution():
    conv = nn.Conv2d(2, 4, kernel_size=3, padding=1, bias=False)
    assert count_parameters(conv) == 4 * 2 * 3 * 3
    # Each of the 4 x 8 x 8 outputs takes 2 x 3 x 3 multiply-adds.
    assert forward_flops(conv, (1, 2, 8, 8)) == 2 * (4 * 8 * 8) * (2 * 3 * 3)


def test_latency_reports_every_run():
    timing = forward_latency(nn.Identity(), (1, 1, 4, 4), repeats=3, warmup=1)
    assert len(timing["runs"]) == 3 and min(timing["runs"]) <= timing["median"] <= max(timing["runs"])
    with pytest.raises(ValueError, match="repeats >= 1"):
        forward_latency(nn.Identity(), (1,), repeats=0)
