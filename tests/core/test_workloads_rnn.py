"""Recurrent layers (nn.RNN/LSTM/GRU and their cells) traced as GEMMs: per layer and direction
the input projection of all timesteps (one GEMM), then the recurrent projection (and an LSTM's
proj_size projection) once per timestep (``repeat``)."""

import warnings

import pytest

from hwloop.errors import WorkloadError
from hwloop.workloads import TraceWarning, trace_module


def rows(workload):
    return [(x.name, x.kind, x.m, x.n, x.k, x.repeat) for x in workload.layers]


def on_meta(build):
    import torch

    with torch.device("meta"):
        return build()


def traced(model, input_shape):
    """The trace, which must warn of nothing (every recurrent layer is recorded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", TraceWarning)
        return trace_module(model, name="m", input_shape=input_shape, spec="mod:M")


def test_a_bidirectional_two_layer_lstm_with_projections_batch_first():
    from torch import nn

    # batch 3, 7 steps, 12 features; hidden 20 (4 gates: N = 80), projected to 5
    model = on_meta(lambda: nn.Sequential(nn.LSTM(12, 20, num_layers=2, bidirectional=True,
                                                  batch_first=True, proj_size=5)))
    w = traced(model, (3, 7, 12))
    direction = [("ih", 21, 80, 12, 1),  # x_t of all 3 x 7 (step, batch) rows at once
                 ("hh", 3, 80, 5, 7),  # h_{t-1} (projected: 5) per step, 3 rows
                 ("hr", 3, 5, 20, 7)]  # the projection of the 20 hidden units to 5
    above = [("ih", 21, 80, 10, 1), *direction[1:]]  # layer 1 reads both directions: 2 x 5
    expected = [(f"0.{part}_l{layer}{suffix}", "gemm", *dims)
                for layer, parts in ((0, direction), (1, above))
                for suffix in ("", "_reverse") for part, *dims in parts]
    assert rows(w) == expected
    per_direction_0 = 21 * 80 * 12 + 7 * 3 * 80 * 5 + 7 * 3 * 5 * 20
    per_direction_1 = 21 * 80 * 10 + 7 * 3 * 80 * 5 + 7 * 3 * 5 * 20
    assert w.macs == 2 * per_direction_0 + 2 * per_direction_1 == 115920


def test_a_gru_without_bias_feeds_a_correctly_shaped_output_downstream():
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(12, 20, bias=False)
            self.head = nn.Linear(20, 4)

        def forward(self, x):
            out, h = self.gru(x)  # (7, 3, 20), sequence first
            return self.head(out), self.head(h)

    w = traced(on_meta(Net), (7, 3, 12))
    assert rows(w) == [
        ("gru.ih_l0", "gemm", 21, 60, 12, 1),  # 3 gates: N = 60
        ("gru.hh_l0", "gemm", 3, 60, 20, 7),
        ("head", "gemm", 21, 4, 20, 1),  # every step's output
        ("head#2", "gemm", 3, 4, 20, 1),  # the last hidden state (1 layer x 3)
    ]
    assert w.macs == 21 * 60 * 12 + 7 * 3 * 60 * 20 + 21 * 4 * 20 + 3 * 4 * 20


def test_an_unbatched_three_layer_relu_rnn_passed_by_keyword():
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(12, 20, num_layers=3, nonlinearity="relu")

        def forward(self, x):
            return self.rnn(input=x)[0]

    w = traced(on_meta(Net), (7, 12))  # (sequence, features): a batch of 1
    assert rows(w) == [
        ("rnn.ih_l0", "gemm", 7, 20, 12, 1), ("rnn.hh_l0", "gemm", 1, 20, 20, 7),
        ("rnn.ih_l1", "gemm", 7, 20, 20, 1), ("rnn.hh_l1", "gemm", 1, 20, 20, 7),
        ("rnn.ih_l2", "gemm", 7, 20, 20, 1), ("rnn.hh_l2", "gemm", 1, 20, 20, 7),
    ]
    assert w.macs == 7 * 20 * 12 + 5 * 7 * 20 * 20


def test_a_packed_sequence_runs_each_step_on_the_sequences_still_running():
    """Lengths 5, 3, 2: 10 rows in all; the steps run 3, 3, 2, 1, 1 sequences (one GEMM shape
    per batch size, ``repeat`` = its steps), in each direction."""
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(12, 20, bidirectional=True)

        def forward(self, x):
            return self.gru(pack_padded_sequence(x, torch.tensor([5, 3, 2])))[1]

    w = traced(on_meta(Net), (5, 3, 12))
    direction = [("ih", 10, 60, 12, 1), ("hh", 3, 60, 20, 2), ("hh", 2, 60, 20, 1),
                 ("hh", 1, 60, 20, 2)]
    assert [(name, m, n, k, repeat) for name, _, m, n, k, repeat in rows(w)] == [
        (f"gru.{part}_l0{suffix}{'#' + str(copy) if copy > 1 else ''}", *dims)
        for suffix in ("", "_reverse")
        for (part, *dims), copy in zip(direction, (1, 1, 2, 3), strict=True)]
    assert w.macs == 2 * (10 * 60 * 12 + 10 * 60 * 20)


@pytest.mark.parametrize("cell, gates", [("RNNCell", 1), ("GRUCell", 3), ("LSTMCell", 4)])
def test_a_cell_stepped_by_the_models_code_is_two_gemms_a_step(cell, gates):
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = getattr(nn, cell)(12, 20)

        def forward(self, x):  # (steps, batch, features)
            state = None
            for step in x:
                state = self.cell(step, state)
            return state

    w = traced(on_meta(Net), (2, 3, 12))
    assert rows(w) == [
        ("cell.ih", "gemm", 3, gates * 20, 12, 1), ("cell.hh", "gemm", 3, gates * 20, 20, 1),
        ("cell.ih#2", "gemm", 3, gates * 20, 12, 1), ("cell.hh#2", "gemm", 3, gates * 20, 20, 1),
    ]
    assert w.macs == 2 * 3 * gates * 20 * (12 + 20)
    # an unbatched step: a batch of 1
    w = traced(on_meta(lambda: nn.Sequential(getattr(nn, cell)(12, 20, bias=False))), (12,))
    assert rows(w) == [("0.ih", "gemm", 1, gates * 20, 12, 1),
                       ("0.hh", "gemm", 1, gates * 20, 20, 1)]


@pytest.mark.parametrize("build, in_shape", [
    (lambda nn: nn.LSTM(12, 20), (7, 3, 12)),
    (lambda nn: nn.LSTM(12, 20, num_layers=2, bidirectional=True, batch_first=True,
                        proj_size=5, bias=False), (3, 7, 12)),
    (lambda nn: nn.LSTM(12, 20, num_layers=3, proj_size=7), (7, 12)),
    (lambda nn: nn.GRU(12, 20, num_layers=2, bidirectional=True, bias=False), (6, 2, 12)),
    (lambda nn: nn.RNN(12, 20, num_layers=2, bidirectional=True, batch_first=True), (4, 9, 12)),
    (lambda nn: nn.RNNCell(12, 20, nonlinearity="relu"), (5, 12)),
    (lambda nn: nn.GRUCell(12, 20), (12,)),
    (lambda nn: nn.LSTMCell(12, 20, bias=False), (5, 12)),
])
def test_the_traced_macs_are_those_torch_computes(build, in_shape):
    """Cross-check on real tensors: torch's own FLOP counter (2 per MAC) of the CPU forward,
    oneDNN off (its fused LSTM kernel is not counted), sees the same multiplications."""
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    w = traced(on_meta(lambda: nn.Sequential(build(nn))), in_shape)
    real = nn.Sequential(build(nn))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LSTM with projections: not supported with oneDNN
        with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as count:
            real(torch.randn(in_shape))
    assert w.macs * 2 == count.get_total_flops() > 0


@pytest.mark.parametrize("first", ["LSTM", "GRU", "RNN", "LSTMCell"])
def test_a_recurrent_first_layer_needs_an_input_shape(first):
    from torch import nn

    model = on_meta(lambda: nn.Sequential(getattr(nn, first)(4, 4), nn.Linear(4, 4)))
    with pytest.raises(WorkloadError) as info:
        trace_module(model, name="x", spec="mod:X")
    assert str(info.value) == (f"workload 'mod:X': its first layer is a {first}, which has no "
                               "default input size: give it an input_shape attribute")
