import sys
import textwrap

import pytest

from hwloop.errors import ConfigError, InputError, WorkloadError
from hwloop.networks import BUILTINS
from hwloop.workloads import (
    Layer,
    Workload,
    dedupe,
    load_topology_csv,
    load_workload,
    trace_module,
    write_topology_csv,
)
from tests.core.cli_helpers import run_main


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_conv_csv_with_trailing_commas_lowers_by_im2col(tmp_path):
    path = write(tmp_path, "net.csv", """
        Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
        Conv1, 230, 230, 7, 7, 3, 64, 2,
        Conv2, 58, 58, 3, 3, 64, 64, 1,
        """)  # noqa: E501
    w = load_workload(str(path))
    assert w.name == "net"
    c1, c2 = w.layers
    assert (c1.kind, c1.m, c1.n, c1.k) == ("conv", 112 * 112, 64, 7 * 7 * 3)
    assert (c2.m, c2.n, c2.k) == (56 * 56, 64, 9 * 64)
    assert c1.stride == 2 and c1.ifmap_h == 230


def test_gemm_csv_without_trailing_comma(tmp_path):
    path = write(tmp_path, "g.csv", """
        Layer Name, M, N, K
        a, 64, 32, 16
        b, 7, 5, 3
        """)
    w = load_topology_csv(path)
    assert [(x.name, x.kind, x.m, x.n, x.k) for x in w.layers] == [
        ("a", "gemm", 64, 32, 16), ("b", "gemm", 7, 5, 3)]


def test_csv_with_five_fields_names_the_line(tmp_path):
    path = write(tmp_path, "bad.csv", """
        Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
        Conv1, 230, 230, 7, 7, 3, 64, 2,
        Conv2, 58, 58, 3, 3,
        """)  # noqa: E501
    with pytest.raises(ConfigError) as info:
        load_workload(str(path))
    assert str(info.value) == (
        f"{path}:3: expected 8 fields (Layer name, IFMAP Height, IFMAP Width, Filter Height, "
        "Filter Width, Channels, Num Filter, Strides), got 5")
    assert info.value.exit_code == 2


def test_csv_negative_stride(tmp_path):
    path = write(tmp_path, "neg.csv", """
        Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
        Conv1, 230, 230, 7, 7, 3, 64, 2,
        Conv2, 58, 58, 3, 3, 64, 64, 1,
        Conv3, 58, 58, 3, 3, 64, 64, -1,
        """)  # noqa: E501
    with pytest.raises(ConfigError) as info:
        load_workload(str(path))
    assert str(info.value) == f"{path}:4: Strides must be a positive integer, not -1"


def test_csv_not_a_number_and_filter_too_big(tmp_path):
    path = write(tmp_path, "x.csv", "Layer Name, M, N, K,\na, 4, x, 2,\n")
    with pytest.raises(ConfigError, match=r"x.csv:2: N must be a positive integer, not 'x'$"):
        load_workload(str(path))
    path = write(tmp_path, "y.csv", "Layer name, IFMAP Height, IFMAP Width, Filter Height, "
                 "Filter Width, Channels, Num Filter, Strides,\nc, 5, 5, 7, 3, 1, 1, 1,\n")
    with pytest.raises(ConfigError, match=r"y.csv:2: Filter Height 7 is larger than IFMAP "
                                          r"Height 5$"):
        load_workload(str(path))


def test_csv_bad_header_and_missing_file(tmp_path):
    path = write(tmp_path, "h.csv", "name, rows, cols\n")
    with pytest.raises(ConfigError, match=r"h.csv:1: unrecognized header"):
        load_workload(str(path))
    with pytest.raises(WorkloadError, match="does not exist"):
        load_workload(str(tmp_path / "missing.csv"))
    (tmp_path / "layers.csv").mkdir()
    with pytest.raises(WorkloadError, match=r"^workload file '.*layers.csv' is a folder$"):
        load_workload(str(tmp_path / "layers.csv"))
    path = tmp_path / "b.csv"
    path.write_bytes(b"Layer Name, M, N, K,\nfc, 1, 2, 3,\n\xff\xfe, 1, 2, 3,\n")
    with pytest.raises(WorkloadError, match=r"b.csv:3: not UTF-8 text \(byte 0xff\)$"):
        load_workload(str(path))


def test_csv_round_trip(tmp_path):
    w = load_workload("dqn").select(first=3)
    path = tmp_path / "dqn.csv"
    write_topology_csv(w, path, form="conv")
    assert [x.shape for x in load_workload(str(path)).layers] == [x.shape for x in w.layers]
    write_topology_csv(w, path, form="gemm")
    assert [x.shape for x in load_workload(str(path)).layers] == [x.shape for x in w.layers]


def test_unknown_workload_lists_the_known_ones():
    with pytest.raises(WorkloadError) as info:
        load_workload("resnet51")
    message = str(info.value)
    assert message.startswith("unknown workload 'resnet51' (known: ")
    for name in ("resnet50", "bert-base", "dqn", "mlp"):
        assert name in message
    assert "\n" not in message


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtins_load(name):
    w = load_workload(name)
    assert w.layers and all(layer.macs > 0 for layer in w.layers)


def test_builtin_shapes_are_the_real_ones():
    r = load_workload("resnet50")
    assert len(r.layers) == 54  # 53 convolutions + fc
    assert 4.0e9 < r.macs < 4.2e9  # ResNet-50 is ~4.1 GMACs
    assert r.layers[0].shape == (112 * 112, 64, 147)
    assert r.layers[-1].shape == (1, 1000, 2048)
    d = load_workload("dqn")
    assert [x.m for x in d.layers[:3]] == [400, 81, 49]
    assert d.layers[3].k == 3136
    b = load_workload("bert-base")
    assert b.layers[3].shape == (128, 128, 64) and b.layers[3].repeat == 12


def test_select_and_dedupe():
    w = load_workload("tiny")
    assert [x.name for x in w.select(first=2).layers] == ["g1", "g2"]
    assert [x.name for x in w.select(layers=["g3"]).layers] == ["g3"]
    with pytest.raises(WorkloadError, match="has no layer 'nope'"):
        w.select(layers=["nope"])
    groups = dedupe(w.layers)
    assert [(layer.name, count) for layer, count in groups] == [("g1", 2), ("g2", 1)]


def test_layer_validation():
    with pytest.raises(WorkloadError, match="m must be a positive integer, not 0"):
        Layer(name="x", m=0, n=1, k=1)
    with pytest.raises(WorkloadError, match="has no layers"):
        Workload("empty", ())


@pytest.mark.parametrize("field, value", [("stride", 0), ("stride", -1), ("batch", 0),
                                          ("ifmap_h", -10), ("filter_w", 0), ("stride", 1.5)])
def test_conv_layer_dimensions_are_positive_integers(field, value):
    """Layer.conv divided by the stride unchecked: 0 was a ZeroDivisionError traceback and -1
    a layer of 36 output pixels for a 10x10 IFMAP and a 3x3 filter."""
    dims = dict(ifmap_h=10, ifmap_w=10, filter_h=3, filter_w=3, channels=2, num_filters=4,
                stride=1, batch=1) | {field: value}
    with pytest.raises(WorkloadError) as info:
        Layer.conv("c", **dims)
    assert str(info.value) == f"layer 'c': {field} must be a positive integer, not {value!r}"


TINY_NET = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    input_shape = (1, 3, 16, 16)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=1, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        x = self.dw(x)
        return self.fc(x.flatten(1))


def make_mlp():
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))


instance = make_mlp()
not_a_model = 42


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        raise RuntimeError("boom")


class Encoder(nn.Module):
    input_shape = (2, 16, 64)  # batch, sequence, features

    def __init__(self):
        super().__init__()
        self.enc = nn.TransformerEncoderLayer(64, 4, 256, batch_first=True)

    def forward(self, x):
        return self.enc(x)


class Cross(nn.Module):
    input_shape = (10, 3, 64)  # sequence, batch, features

    def __init__(self):
        super().__init__()
        self.mixed = nn.MultiheadAttention(64, 4, kdim=32, vdim=48)
        self.packed = nn.MultiheadAttention(64, 4)

    def forward(self, x):
        key, value = torch.empty(7, 3, 32, device=x.device), torch.empty(7, 3, 48, device=x.device)
        memory = torch.empty(5, 3, 64, device=x.device)
        y, _ = self.mixed(x, key, value)
        y, _ = self.packed(query=y, key=memory, value=memory)
        y, _ = self.packed(y, y, y)
        return y


class Handmade(nn.Module):
    input_shape = (2, 8, 32)  # batch, sequence, features

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(32, 96)
        self.proj = nn.Parameter(torch.empty(32, 4))

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        y = torch.matmul((q @ k.transpose(-2, -1)).softmax(-1), v)
        heads = y.view(2, 8, 4, 8).transpose(1, 2)
        z = torch.nn.functional.scaled_dot_product_attention(heads, heads, heads)
        z = torch.bmm(z.reshape(8, 8, 8), torch.empty(8, 8, 5, device=x.device))
        return y @ self.proj
'''


@pytest.fixture
def tiny_module(tmp_path, monkeypatch):
    (tmp_path / "tinynet_mod.py").write_text(TINY_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "tinynet_mod"
    sys.modules.pop("tinynet_mod", None)


def test_torch_class_is_traced_on_meta(tiny_module):
    w = load_workload(f"{tiny_module}:TinyNet")
    assert [(x.name, x.kind, x.m, x.n, x.k, x.repeat) for x in w.layers] == [
        ("conv", "conv", 16 * 16, 8, 27, 1),
        ("dw", "conv", 8 * 8, 1, 9, 8),
        ("fc", "gemm", 1, 10, 512, 1),
    ]
    assert w.layers[0].ifmap_h == 18  # padded, as SCALE-Sim expects


def test_a_conv_the_conv_form_cannot_say_is_written_as_gemm_only(tmp_path):
    """SCALE-Sim's conv form has one stride and no dilation: such a traced layer is refused
    by name there (its GEMM is right, and the gemm form writes it)."""
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=(2, 1)), nn.Conv2d(4, 4, 3, dilation=2),
                          nn.Conv2d(4, 4, 1, stride=2))
    w = trace_module(model, name="odd", input_shape=(1, 3, 17, 17))
    assert [layer.stride for layer in w.layers] == [None, None, 2]
    assert [layer.shape for layer in w.layers] == [(8 * 15, 4, 27), (4 * 11, 4, 36),
                                                   (2 * 6, 4, 4)]
    path = tmp_path / "odd.csv"
    with pytest.raises(WorkloadError, match=r"^layer '0' has unequal strides or a dilation, "
                       r"which the conv form cannot say: write the gemm form$"):
        write_topology_csv(w, path, form="conv")
    write_topology_csv(w.select(layers=["2"]), path, form="conv")
    assert [x.shape for x in load_workload(str(path)).layers] == [w.layers[2].shape]
    write_topology_csv(w, path, form="gemm")
    assert [x.shape for x in load_workload(str(path)).layers] == [x.shape for x in w.layers]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_padding_same_records_the_padded_ifmap_the_conv_form_needs(tmp_path):
    """padding='same' pads dilation * (kernel - 1) in all, per dimension (asymmetric for an
    even kernel): the recorded IFMAP was padded by 2 * ((kernel_h - 1) // 2) on both axes, so an
    even or non-square kernel wrote a conv-form layer of other output sizes than it has."""
    from torch import nn

    model = nn.Sequential(nn.Conv2d(4, 8, 4, padding="same"),
                          nn.Conv2d(8, 8, (3, 5), padding="same"),
                          nn.Conv2d(8, 8, 3, padding="valid"))
    w = trace_module(model, name="same", input_shape=(1, 4, 10, 12))
    assert [(x.ifmap_h, x.ifmap_w, x.stride) for x in w.layers] == [
        (13, 15, 1), (12, 16, 1), (10, 12, 1)]
    assert [x.m for x in w.layers] == [120, 120, 8 * 10]
    path = tmp_path / "same.csv"
    write_topology_csv(w, path, form="conv")
    assert [x.shape for x in load_workload(str(path)).layers] == [x.shape for x in w.layers]


def test_an_unbatched_conv_input_is_traced_as_batch_1():
    """Conv2d takes (C, H, W) as well as (N, C, H, W); the hook unpacked four dimensions and
    the trace failed ('not enough values to unpack')."""
    from torch import nn

    w = trace_module(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1)), name="unbatched",
                     input_shape=(3, 16, 16))
    [layer] = w.layers
    assert (layer.m, layer.n, layer.k, layer.ifmap_h, layer.stride) == (256, 8, 27, 18, 1)


def test_attention_projections_are_traced(tiny_module):
    # MultiheadAttention runs its projections functionally: no Linear hook sees them
    w = load_workload(f"{tiny_module}:Encoder")
    assert [(x.name, x.kind, x.m, x.n, x.k, x.repeat) for x in w.layers] == [
        ("enc.self_attn.in_proj", "gemm", 32, 3 * 64, 64, 1),  # q, k, v fused, 2 x 16 tokens
        ("enc.self_attn.scores", "gemm", 16, 16, 16, 8),  # per head: 2 x 4 heads of 16
        ("enc.self_attn.context", "gemm", 16, 16, 16, 8),
        ("enc.self_attn.out_proj", "gemm", 32, 64, 64, 1),
        ("enc.linear1", "gemm", 32, 256, 64, 1),
        ("enc.linear2", "gemm", 32, 64, 256, 1),
    ]
    w = load_workload(f"{tiny_module}:Cross")
    assert [(x.name, x.m, x.n, x.k, x.repeat) for x in w.layers] == [
        ("mixed.q_proj", 30, 64, 64, 1),
        ("mixed.k_proj", 21, 64, 32, 1),  # kdim
        ("mixed.v_proj", 21, 64, 48, 1),  # vdim
        ("mixed.scores", 10, 7, 16, 12),  # sequence first: 10 queries, 7 keys, 3 x 4 heads
        ("mixed.context", 10, 16, 7, 12),
        ("mixed.out_proj", 30, 64, 64, 1),
        ("packed.q_proj", 30, 64, 64, 1),  # key is value (keyword arguments): one GEMM for both
        ("packed.kv_proj", 15, 128, 64, 1),
        ("packed.scores", 10, 5, 16, 12),
        ("packed.context", 10, 16, 5, 12),
        ("packed.out_proj", 30, 64, 64, 1),
        ("packed.in_proj", 30, 192, 64, 1),  # called again, as self-attention
        ("packed.scores#2", 10, 10, 16, 12),
        ("packed.context#2", 10, 16, 10, 12),
        ("packed.out_proj#2", 30, 64, 64, 1),
    ]


def test_products_written_in_a_models_code_are_traced(tiny_module):
    w = load_workload(f"{tiny_module}:Handmade")
    assert [(x.name, x.m, x.n, x.k, x.repeat) for x in w.layers] == [
        ("qkv", 16, 96, 32, 1),
        ("handmade.matmul", 8, 8, 32, 2),  # q @ k^T per batch
        ("handmade.matmul#2", 8, 32, 8, 2),  # torch.matmul(scores, v)
        ("handmade.scores", 8, 8, 8, 8),  # scaled_dot_product_attention: 2 x 4 heads
        ("handmade.context", 8, 8, 8, 8),
        ("handmade.bmm", 8, 5, 8, 8),
        ("handmade.matmul#3", 16, 4, 32, 1),  # a shared matrix: the 2 x 8 rows are m
    ]


def test_a_linear_written_as_f_linear_is_traced_once():
    """``F.linear`` in a model's own code (a weight-tied LM head) made no layer: the function
    mode saw it as a whole functional and skipped it, as it must inside nn.Linear only."""
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    class TiedHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(100, 16)
            self.fc = nn.Linear(16, 16)

        def forward(self, x):
            return F.linear(self.fc(x), self.embed.weight)

    with torch.device("meta"):
        model = TiedHead()
    w = trace_module(model, name="tied", input_shape=(2, 5, 16))
    assert [(x.name, x.m, x.n, x.k, x.repeat) for x in w.layers] == [
        ("fc", 10, 16, 16, 1), ("tiedhead.linear", 10, 100, 16, 1)]
    assert torch.is_grad_enabled()


def test_torch_factory_and_instance(tiny_module):
    for attr in ("make_mlp", "instance"):
        w = load_workload(f"{tiny_module}:{attr}")
        assert [x.shape for x in w.layers] == [(1, 30, 20), (1, 5, 30)]


def test_torch_bad_specs(tiny_module):
    with pytest.raises(WorkloadError, match=r"cannot import module 'no_such_mod_xyz'"):
        load_workload("no_such_mod_xyz:Net")
    with pytest.raises(WorkloadError, match=r"has no attribute 'Nope'"):
        load_workload(f"{tiny_module}:Nope")
    with pytest.raises(WorkloadError, match=r"is not a torch.nn.Module"):
        load_workload(f"{tiny_module}:not_a_model")
    with pytest.raises(WorkloadError, match=r"forward pass .* failed: RuntimeError: boom"):
        load_workload(f"{tiny_module}:Broken")
    for spec in ("no_such_mod_xyz:Net", f"{tiny_module}:Nope"):
        with pytest.raises(InputError):
            load_workload(spec)


@pytest.mark.parametrize("shape", ["784", "(1, 'a')", "(0, 784)", "(1, -784)", "()",
                                   "'1x784'", "(1.0, 784)", "(True, 784)"])
def test_a_bad_input_shape_is_one_line_exit_2(tmp_path, monkeypatch, capsys, shape):
    (tmp_path / "shape_mod.py").write_text(
        f"from torch import nn\n\n\nclass Net(nn.Sequential):\n    input_shape = {shape}\n\n"
        "    def __init__(self):\n        super().__init__(nn.Linear(784, 10))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "shape_mod", raising=False)
    value = eval(shape)  # noqa: S307 — the test's own literals
    message = (f"workload 'shape_mod:Net': input_shape must be a sequence of positive integers, "
               f"not {value!r}")
    with pytest.raises(WorkloadError) as info:
        load_workload("shape_mod:Net")
    assert str(info.value) == message
    code, _, err = run_main(capsys, ["sim", "systolic", "--workload", "shape_mod:Net",
                                     "--fidelity", "model"])
    assert code == 2 and err == f"hwloop: error: {message}\n"
    sys.modules.pop("shape_mod", None)


# --- convolutions and einsums written as torch calls, Conv1d, ConvTranspose2d -------------------

CONV_FIELDS = ("name", "kind", "m", "n", "k", "repeat", "ifmap_h", "ifmap_w", "filter_h",
               "filter_w", "channels", "num_filters", "stride")


def fields(layer):
    return tuple(getattr(layer, f) for f in CONV_FIELDS)


def conv_macs(output_shape, weight_shape):
    """The true MACs of a convolution: every output element sums in_channels/groups x kernel
    products (weight_shape is (out, in / groups, *kernel))."""
    import math

    return math.prod(output_shape) * math.prod(weight_shape[1:])


def conv_both_ways(dims, in_shape, conv):
    """The layer an ``nn.Conv<dims>d`` of ``conv`` (out, kernel and its keyword arguments)
    records, the layer ``F.conv<dims>d`` with the same arguments in a model's code records,
    and the op's output and weight shapes (on meta tensors)."""
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    args = {key: value for key, value in conv.items() if key not in ("out", "kernel")}
    call = getattr(F, f"conv{dims}d")
    with torch.device("meta"):
        module = getattr(nn, f"Conv{dims}d")(in_shape[-dims - 1], conv["out"], conv["kernel"],
                                             **args)
    functional = functional_model(lambda x, w: call(x, w, **args), module.weight.shape)
    [by_module] = trace_module(nn.Sequential(module), name="m", input_shape=in_shape).layers
    [by_call] = trace_module(functional, name="f", input_shape=in_shape).layers
    output = call(torch.empty(in_shape, device="meta"), module.weight, **args)
    return by_module, by_call, output.shape, module.weight.shape


def functional_model(call, *weights):
    """A model whose own code is ``call(x, *weights)`` (meta parameters of those shapes)."""
    import torch
    from torch import nn

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.weights = nn.ParameterList(torch.empty(w, device="meta") for w in weights)

        def forward(self, x):
            return call(x, *self.weights)

    return Model()


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(("in_shape", "conv", "record"), [
    # record: m, n, k, repeat, ifmap_h, ifmap_w, filter_h, filter_w, channels, filters, stride
    ((1, 3, 16, 16), dict(out=8, kernel=3, padding=1), (256, 8, 27, 1, 18, 18, 3, 3, 3, 8, 1)),
    ((2, 4, 10, 12), dict(out=8, kernel=(3, 5), padding="same"),
     (240, 8, 60, 1, 12, 16, 3, 5, 4, 8, 1)),
    ((1, 4, 10, 12), dict(out=8, kernel=4, padding="same"),  # uneven padding
     (120, 8, 64, 1, 13, 15, 4, 4, 4, 8, 1)),
    ((1, 4, 9, 9), dict(out=6, kernel=3, padding="valid", stride=2),
     (16, 6, 36, 1, 9, 9, 3, 3, 4, 6, 2)),
    ((1, 3, 17, 17), dict(out=4, kernel=3, stride=(2, 1)),  # unequal strides: no stride
     (120, 4, 27, 1, 17, 17, 3, 3, 3, 4, None)),
    ((1, 4, 17, 17), dict(out=4, kernel=3, dilation=2, padding=(1, 2)),  # dilation: none
     (255, 4, 36, 1, 19, 21, 3, 3, 4, 4, None)),
    ((1, 8, 16, 16), dict(out=8, kernel=3, stride=2, padding=1, groups=8),  # depthwise
     (64, 1, 9, 8, 18, 18, 3, 3, 1, 1, 2)),
    ((1, 8, 7, 7), dict(out=12, kernel=1, groups=4), (49, 3, 2, 4, 7, 7, 1, 1, 2, 3, 1)),
    ((3, 16, 16), dict(out=8, kernel=3, padding=1),  # unbatched
     (256, 8, 27, 1, 18, 18, 3, 3, 3, 8, 1)),
])
def test_f_conv2d_in_a_models_code_is_recorded_as_the_nn_conv2d(in_shape, conv, record):
    """F.conv2d written in a model made no layer (its work was missing): it is now recorded
    field for field as an nn.Conv2d of the same arguments, named OWNER.conv2d."""
    by_module, by_call, output_shape, weight_shape = conv_both_ways(2, in_shape, conv)
    assert by_call.name == "model.conv2d"  # the module whose code calls it
    assert fields(by_call)[1:] == fields(by_module)[1:] == ("conv", *record)
    assert by_call.macs == conv_macs(output_shape, weight_shape)


def test_f_conv2d_positional_arguments_and_an_exact_record():
    import torch
    from torch.nn import functional as F  # noqa: N812

    # F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    model = functional_model(lambda x, w: F.conv2d(x, w, None, (2, 1), 1, 1, 2), (16, 4, 3, 3))
    w = trace_module(model, name="f", input_shape=(1, 8, 16, 16))
    assert [fields(x) for x in w.layers] == [
        ("model.conv2d", "conv", 8 * 16, 8, 36, 2, 18, 18, 3, 3, 4, 8, None)]
    assert w.macs == conv_macs((1, 16, 8, 16), (16, 4, 3, 3))
    assert torch.is_grad_enabled()


MIXED_NET = '''
import torch
from torch import nn
from torch.nn import functional as F


class Standardized(nn.Conv2d):
    """A weight-standardized convolution: its forward calls F.conv2d itself."""

    def forward(self, x):
        w = self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.mix = nn.Parameter(torch.empty(16, 4, 3, 3))  # 2 groups

    def forward(self, x):
        return F.conv2d(x, self.mix, padding="same", groups=2)


class Mixed(nn.Module):
    input_shape = (2, 3, 16, 16)

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect")
        self.std = Standardized(8, 8, 3, stride=2, padding=1)
        self.block = Block()
        self.seq = nn.Conv1d(16, 6, 5, stride=2)
        self.taps = nn.Parameter(torch.empty(4, 6, 3))
        self.up = nn.ConvTranspose2d(16, 4, 4, stride=2, padding=1)
        self.up_w = nn.Parameter(torch.empty(4, 2, 3, 3))  # 2 groups of 2 -> 2 channels
        self.head = nn.Linear(4, 10)
        self.proj = nn.Parameter(torch.empty(4, 5))

    def forward(self, x):
        x = self.std(self.stem(x))  # (2, 8, 8, 8)
        x = self.block(x)  # (2, 16, 8, 8)
        up = F.conv_transpose2d(self.up(x), self.up_w, None, 1, 0, 0, 2)  # (2, 4, 18, 18)
        s = self.seq(x.flatten(2))  # (2, 6, 30)
        s = F.conv1d(s, self.taps, dilation=2)  # (2, 4, 26)
        t = torch.einsum("bct,cd->btd", s, self.proj)  # (2, 26, 5)
        scores = torch.einsum("bqd,bkd->bqk", t, t)
        return self.head(s.transpose(1, 2)), up, scores
'''


def test_a_model_mixing_modules_and_torch_calls_is_traced_once_each(tmp_path, monkeypatch):
    """Every convolution once: nn.Conv2d (and a subclass calling F.conv2d itself, and one
    padding with reflect) by its hook, F.conv2d/conv1d/conv_transpose2d in the model's code by
    the function mode, nn.Conv1d and nn.ConvTranspose2d by theirs; einsums as GEMMs."""
    (tmp_path / "mixed_mod.py").write_text(MIXED_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mixed_mod", raising=False)
    w = load_workload("mixed_mod:Mixed")
    sys.modules.pop("mixed_mod", None)
    assert [fields(x) for x in w.layers] == [
        ("stem", "conv", 2 * 16 * 16, 8, 27, 1, 18, 18, 3, 3, 3, 8, 1),
        ("std", "conv", 2 * 8 * 8, 8, 72, 1, 18, 18, 3, 3, 8, 8, 2),
        ("block.conv2d", "conv", 2 * 8 * 8, 8, 36, 2, 10, 10, 3, 3, 4, 8, 1),
        # ConvTranspose2d: input pixels x (16 -> 4 channels x 4x4 taps), col2im off the array
        ("up", "gemm", 2 * 8 * 8, 4 * 16, 16, 1, None, None, None, None, None, None, None),
        ("mixed.conv_transpose2d", "gemm", 2 * 16 * 16, 2 * 9, 2, 2,
         None, None, None, None, None, None, None),
        # Conv1d: a conv of IFMAP height 1 (filter height 1)
        ("seq", "conv", 2 * 30, 6, 80, 1, 1, 64, 1, 5, 16, 6, 2),
        ("mixed.conv1d", "conv", 2 * 26, 4, 18, 1, 1, 30, 1, 3, 6, 4, None),  # dilated
        ("mixed.einsum", "gemm", 2 * 26, 5, 4, 1, None, None, None, None, None, None, None),
        ("mixed.einsum#2", "gemm", 26, 26, 5, 2, None, None, None, None, None, None, None),
        ("head", "gemm", 2 * 26, 10, 4, 1, None, None, None, None, None, None, None),
    ]
    true_macs = [
        conv_macs((2, 8, 16, 16), (8, 3, 3, 3)), conv_macs((2, 8, 8, 8), (8, 8, 3, 3)),
        conv_macs((2, 16, 8, 8), (16, 4, 3, 3)),
        2 * 8 * 8 * 16 * 4 * 16,  # every input element times every weight of its channel
        2 * 4 * 16 * 16 * 2 * 9,  # ... of its group: 2 out channels x 3x3 taps
        conv_macs((2, 6, 30), (6, 16, 5)), conv_macs((2, 4, 26), (4, 6, 3)),
        2 * 4 * 26 * 5,  # b c t d
        2 * 26 * 26 * 5,  # b q k d
        2 * 26 * 10 * 4,
    ]
    assert [x.macs for x in w.layers] == true_macs


def test_the_conv1d_record_is_its_im2col_gemm_and_scale_sim_reads_it_so(tmp_path):
    """A Conv1d is a convolution of IFMAP height 1 and filter height 1: its im2col matrix
    (F.unfold of the (N, C, 1, L) input by a (1, kw) window) is the recorded M x K, and the
    SCALE-Sim conv form reads back the same GEMM (one output row for any stride)."""
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    model = nn.Sequential(nn.Conv1d(6, 10, 7, stride=3, padding=2), nn.Conv1d(10, 4, 1))
    w = trace_module(model, name="c1", input_shape=(2, 6, 50))
    assert [fields(x) for x in w.layers] == [
        ("0", "conv", 2 * 16, 10, 42, 1, 1, 54, 1, 7, 6, 10, 3),
        ("1", "conv", 2 * 16, 4, 10, 1, 1, 16, 1, 1, 10, 4, 1)]
    columns = F.unfold(F.pad(torch.zeros(2, 6, 1, 50), (2, 2)), (1, 7), stride=3)
    assert (columns.shape[1], columns.shape[0] * columns.shape[2]) == (42, 2 * 16)  # K, M
    path = tmp_path / "c1.csv"  # (the conv form has no batch: batch 1)
    w = trace_module(model, name="c1", input_shape=(1, 6, 50))
    write_topology_csv(w, path, form="conv")
    assert [x.shape for x in load_workload(str(path)).layers] == [(16, 10, 42), (16, 4, 10)]


def test_the_conv_transpose2d_gemm_computes_the_op_with_col2im():
    """What is counted for a ConvTranspose2d: the GEMM (input pixels x in channels) @ (in
    channels x out channels x kh x kw) whose col2im scatter-add (F.fold, not on the array) is
    the op's output, for any stride, padding, dilation and output_padding."""
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    torch.manual_seed(0)
    conv = nn.ConvTranspose2d(3, 5, (3, 2), stride=(2, 3), padding=(1, 0), dilation=(1, 2),
                              output_padding=1, bias=False)
    x = torch.randn(2, 3, 4, 6)
    [layer] = trace_module(nn.Sequential(conv), name="t", input_shape=x.shape).layers
    assert (layer.kind, layer.m, layer.n, layer.k, layer.repeat) == ("gemm", 48, 30, 3, 1)
    a = x.permute(0, 2, 3, 1).reshape(layer.m, layer.k)  # pixels x in channels
    b = conv.weight.reshape(layer.k, layer.n)  # in channels x (out channels x kh x kw)
    products = (a @ b).reshape(2, 24, layer.n).transpose(1, 2)
    expected = conv(x)
    scattered = F.fold(products, expected.shape[-2:], (3, 2), dilation=(1, 2),
                       padding=(1, 0), stride=(2, 3))
    assert torch.allclose(scattered, expected, atol=1e-5)
    assert layer.macs == x.numel() * conv.weight[0].numel()


@pytest.mark.parametrize(("equation", "shapes", "gemm"), [
    ("ij,jk->ik", [(3, 4), (4, 5)], (3, 5, 4, 1)),
    ("ij,kj->ik", [(3, 4), (5, 4)], (3, 5, 4, 1)),  # transposed operands: the same GEMM
    ("bij,bjk->bik", [(6, 3, 4), (6, 4, 5)], (3, 5, 4, 6)),  # as torch.bmm: repeat = batch
    ("bhqd,bhkd->bhqk", [(2, 4, 8, 16), (2, 4, 9, 16)], (8, 9, 16, 8)),
    ("btc,cd->btd", [(2, 7, 4), (4, 5)], (14, 5, 4, 1)),  # a shared matrix: rows are m
    ("...ij,jk", [(2, 3, 4, 5), (5, 6)], (24, 6, 5, 1)),  # ellipsis, implicit output
    # ellipsis dimensions align from the right: the 2 only the first has are rows, as a
    # shared matrix's are; the 3 of both is the batch
    ("...ij,...jk->...ik", [(2, 3, 4, 5), (3, 5, 6)], (8, 6, 5, 3)),
    ("ij,j->i", [(3, 4), (4,)], (3, 1, 4, 1)),  # matrix x vector, as matmul records it
    ("bi,bi->b", [(5, 4), (5, 4)], (1, 1, 4, 5)),  # batched dot products
    ("i,j->ij", [(3,), (4,)], (3, 4, 1, 1)),  # outer product: K = 1
    ("bchw,oc->bohw", [(2, 8, 5, 5), (3, 8)], (50, 3, 8, 1)),  # a 1x1 convolution
    ("ab,bc", [(2, 3), (3, 4)], (2, 4, 3, 1)),  # implicit output: ac
])
def test_an_einsum_that_is_a_matrix_product_is_its_gemm(equation, shapes, gemm):
    import math

    import torch

    model = functional_model(lambda x, *ws: torch.einsum(equation, *ws), *shapes)
    w = trace_module(model, name="e", input_shape=(1,))
    [layer] = w.layers
    assert (layer.name, layer.m, layer.n, layer.k, layer.repeat) == ("model.einsum", *gemm)
    # the true MACs: one per output element and contracted index, i.e. per index combination
    sizes = {}
    lhs = equation.split("->")[0].replace("...", "").split(",")
    for spec, shape in zip(lhs, shapes, strict=True):
        sizes |= dict(zip(spec, shape[len(shape) - len(spec):], strict=True))
    batch_dims = torch.broadcast_shapes(*(s[:len(s) - len(p)] for s, p in zip(
        shapes, lhs, strict=True)))
    assert layer.macs == math.prod(sizes.values()) * math.prod(batch_dims)


def test_einsum_operands_in_a_list_or_as_sublists():
    import torch

    model = functional_model(lambda x, a, b: (torch.einsum("ij,jk->ik", [a, b]),
                                             torch.einsum(a, [0, 1], b, [1, 2], [0, 2])),
                            (3, 4), (4, 5))
    w = trace_module(model, name="e", input_shape=(1,))
    assert [(x.name, x.shape, x.repeat) for x in w.layers] == [
        ("model.einsum", (3, 5, 4), 1), ("model.einsum#2", (3, 5, 4), 1)]


def test_an_einsum_that_is_no_matrix_product_is_skipped_with_one_warning_each():
    """Skipped as the tracer skips every call that is no GEMM, but said: its multiplications
    are not counted. One operand multiplies nothing (a transpose, a trace): no warning."""
    import warnings

    import torch

    from hwloop.workloads import TraceWarning

    def forward(x, a, b, c):
        for _ in range(2):  # twice: one warning
            torch.einsum("ij,ij->ij", a, a)
        torch.einsum("ij,jk,kl->il", a, b, c)
        torch.einsum("ii,ij->j", a, b)
        torch.einsum("ij,jk->i", a, b)
        torch.einsum("...ij,jk->ik", c.expand(2, 4, 4), b)
        torch.einsum("ij->ji", a)
        torch.einsum("ii", a)
        return torch.einsum("ij,jk->ik", a, b)

    model = functional_model(forward, (4, 4), (4, 4), (4, 4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w = trace_module(model, name="e", input_shape=(1,), spec="mod:E")
    assert [(x.name, x.shape) for x in w.layers] == [("model.einsum", (4, 4, 4))]
    assert all(warning.category is TraceWarning for warning in caught)
    # at the model's line that calls the einsum, not the tracer's
    first = forward.__code__.co_firstlineno + 2
    assert (caught[0].filename, caught[0].lineno) == (__file__, first)
    assert [str(warning.message) for warning in caught] == [
        f"workload 'mod:E': model.einsum {equation!r} is not traced ({why}): its "
        "multiplications are not counted" for equation, why in [
            ("ij,ij->ij", "an elementwise product, no index is contracted"),
            ("ij,jk,kl->il", "3 operands"),
            ("ii,ij->j", "index 'i' repeats in one operand"),
            ("ij,jk->i", "index 'k' is summed within one operand"),
            ("...ij,jk->ik", "index '...' is summed within one operand"),
        ]]


def test_a_model_without_layer_modules_is_traced_from_its_input_shape():
    """Only the default input shape needs a Conv2d or Linear module: a model written with
    torch calls alone traces from its input_shape (it was refused as having no layers)."""
    import torch
    from torch.nn import functional as F  # noqa: N812

    model = functional_model(lambda x, w: F.conv2d(x, w), (4, 3, 3, 3))
    with pytest.raises(WorkloadError) as info:
        trace_module(model, name="f", spec="mod:F")
    assert str(info.value) == ("workload 'mod:F' has no Conv2d or Linear layers: give it an "
                               "input_shape attribute to trace the torch calls of its code")
    w = trace_module(model, name="f", input_shape=(1, 3, 8, 8))
    assert [(x.name, x.shape) for x in w.layers] == [("model.conv2d", (36, 4, 27))]
    idle = functional_model(lambda x: torch.relu(x))
    with pytest.raises(WorkloadError) as info:
        trace_module(idle, name="idle", input_shape=(1, 3), spec="mod:Idle")
    assert str(info.value) == (
        "workload 'mod:Idle' runs no layer the tracer records (a convolution, Linear, "
        "MultiheadAttention, RNN/LSTM/GRU or their cell, or a product, convolution or einsum as "
        "a torch call)")


@pytest.mark.parametrize("first", ["Conv1d", "ConvTranspose2d", "Conv3d", "ConvTranspose1d",
                                   "ConvTranspose3d"])
def test_a_first_convolution_other_than_conv2d_needs_an_input_shape(first):
    """224x224 is the usual image; a sequence's length, a volume's depth or a transposed
    convolution's input (often 1x1) has no usual size to default to."""
    import torch
    from torch import nn

    with torch.device("meta"):
        model = nn.Sequential(getattr(nn, first)(4, 4, 3), nn.Conv2d(4, 4, 3))
    with pytest.raises(WorkloadError) as info:
        trace_module(model, name="x", spec="mod:X")
    assert str(info.value) == (f"workload 'mod:X': its first layer is a {first}, which has no "
                               "default input size: give it an input_shape attribute")


# --- 3-D convolutions, 1-D and 3-D transposed convolutions ---------------------------------------

GEMM = ("gemm", None, None, None, None, None, None, None)  # kind, then no conv fields


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(("in_shape", "conv", "gemm"), [
    # gemm: m, n, k, repeat
    ((1, 3, 8, 16, 16), dict(out=8, kernel=3, padding=1), (8 * 16 * 16, 8, 27 * 3, 1)),
    # depth (9 + 2 - 2 - 1) // 2 + 1 = 5, height (10 - 2 - 1) + 1 = 8 (dilated 2), width
    # (11 + 4 - 4 - 1) // 3 + 1 = 4; a 3x2x5 kernel over 4 channels
    ((2, 4, 9, 10, 11), dict(out=6, kernel=(3, 2, 5), stride=(2, 1, 3), padding=(1, 0, 2),
                             dilation=(1, 2, 1)), (2 * 5 * 8 * 4, 6, 30 * 4, 1)),
    ((1, 8, 4, 8, 8), dict(out=8, kernel=3, stride=2, padding=1, groups=8),  # depthwise
     (2 * 4 * 4, 1, 27, 8)),
    ((1, 8, 5, 5, 5), dict(out=12, kernel=1, groups=4), (125, 3, 2, 4)),  # 4 groups of 2 -> 3
    ((3, 6, 6, 6), dict(out=4, kernel=3, padding="same"), (216, 4, 81, 1)),  # unbatched
])
def test_a_conv3d_is_its_im2col_gemm_as_module_or_torch_call(in_shape, conv, gemm):
    """M = output voxels x batch, N = filters (of a group), K = kd x kh x kw x channels (of a
    group), ``repeat`` = groups: a gemm layer, as SCALE-Sim's conv form has no depth."""
    by_module, by_call, output_shape, weight_shape = conv_both_ways(3, in_shape, conv)
    assert (by_module.name, by_call.name) == ("0", "model.conv3d")
    assert fields(by_call)[1:] == fields(by_module)[1:] == (*GEMM[:1], *gemm, *GEMM[1:])
    assert by_call.macs == conv_macs(output_shape, weight_shape)


@pytest.mark.parametrize(("in_shape", "conv", "gemm", "macs"), [
    # every input element times every weight of its group: x.numel() x (out / groups) x taps
    ((2, 6, 10), dict(dims=1, out=4, kernel=5, stride=3, padding=2, output_padding=1,
                      dilation=2), (20, 4 * 5, 6, 1), 120 * 20),
    ((6, 10), dict(dims=1, out=4, kernel=3, groups=2), (10, 2 * 3, 3, 2), 60 * 6),  # unbatched
    ((1, 4, 3, 5, 5), dict(dims=3, out=6, kernel=(2, 3, 3), stride=2, padding=1),
     (75, 6 * 18, 4, 1), 300 * 108),
    ((2, 8, 2, 4, 4), dict(dims=3, out=8, kernel=3, groups=8), (64, 27, 1, 8), 512 * 27),
])
def test_conv_transpose1d_and_3d_are_the_gemm_before_col2im(in_shape, conv, gemm, macs):
    """As ConvTranspose2d: M = input positions x batch, N = out channels (of a group) x kernel
    taps, K = in channels (of a group), ``repeat`` = groups; module and torch call alike."""
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    dims = conv["dims"]
    args = {key: value for key, value in conv.items() if key not in ("dims", "out", "kernel")}
    with torch.device("meta"):
        module = getattr(nn, f"ConvTranspose{dims}d")(in_shape[-dims - 1], conv["out"],
                                                      conv["kernel"], **args)
    call = getattr(F, f"conv_transpose{dims}d")
    functional = functional_model(lambda x, w: call(x, w, **args), module.weight.shape)
    [by_module] = trace_module(nn.Sequential(module), name="m", input_shape=in_shape).layers
    [by_call] = trace_module(functional, name="f", input_shape=in_shape).layers
    assert (by_module.name, by_call.name) == ("0", f"model.conv_transpose{dims}d")
    assert fields(by_call)[1:] == fields(by_module)[1:] == (*GEMM[:1], *gemm, *GEMM[1:])
    assert by_call.macs == macs


def test_the_conv_transpose1d_gemm_computes_the_op_with_col2im():
    """The ConvTranspose1d GEMM (input positions x in channels) @ (in channels x out channels
    x taps), scattered by col2im (F.fold over one row), is the op's output."""
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    torch.manual_seed(0)
    conv = nn.ConvTranspose1d(3, 5, 4, stride=3, padding=2, dilation=2, output_padding=1,
                              bias=False)
    x = torch.randn(2, 3, 7)
    model = nn.Sequential(conv)
    [layer] = trace_module(model, name="t", input_shape=x.shape).layers
    assert (layer.m, layer.n, layer.k, layer.repeat) == (14, 20, 3, 1)
    a = x.permute(0, 2, 1).reshape(layer.m, layer.k)
    b = conv.weight.reshape(layer.k, layer.n)
    products = (a @ b).reshape(2, 7, layer.n).transpose(1, 2)
    expected = conv(x)
    scattered = F.fold(products, (1, expected.shape[-1]), (1, 4), dilation=(1, 2),
                       padding=(0, 2), stride=(1, 3))
    assert torch.allclose(scattered[:, :, 0], expected, atol=1e-5)


def test_a_conv3d_has_no_conv_form_and_is_written_as_gemm(tmp_path):
    from torch import nn

    w = trace_module(nn.Sequential(nn.Conv3d(2, 4, 3)), name="v", input_shape=(1, 2, 5, 5, 5))
    path = tmp_path / "v.csv"
    with pytest.raises(WorkloadError, match=r"^layer '0' is not a convolution$"):
        write_topology_csv(w, path, form="conv")
    write_topology_csv(w, path, form="gemm")
    assert [x.shape for x in load_workload(str(path)).layers] == [(27, 4, 54)]


# --- modules with weights whose work is not recorded ------------------------------------------

UNSEEN_NET = '''
import torch
from torch import nn
from torch.nn import functional as F


class Tensordot(nn.Module):
    """A custom layer written with a torch call the tracer does not know."""

    def __init__(self):
        super().__init__()
        self.kernel = nn.Parameter(torch.empty(6, 3))

    def forward(self, x):
        return torch.tensordot(x, self.kernel, dims=1)


class Gated(nn.Module):
    """Its own matrix is only added, but its child records: no warning for it."""

    def __init__(self):
        super().__init__()
        self.bias_table = nn.Parameter(torch.empty(4, 3))
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(x) + self.bias_table


class Skipped(nn.Module):
    """Its einsum is warned about already: the module is not warned about too."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.empty(4, 3))

    def forward(self, x):
        return torch.einsum("bij,ij->bij", x, self.scale)


class Net(nn.Module):
    input_shape = (2, 4, 6)

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.bag = nn.EmbeddingBag(10, 6)
        self.norm = nn.LayerNorm(6)
        self.bn = nn.BatchNorm1d(4)
        self.prelu = nn.PReLU(4)
        self.bil = nn.Bilinear(6, 6, 3)
        self.dot = Tensordot()
        self.gated = Gated()
        self.skipped = Skipped()
        self.unused = nn.Bilinear(2, 2, 2)  # never called: nothing lost

    def forward(self, x):
        ids = torch.zeros(2, 4, dtype=torch.long, device=x.device)
        x = self.norm(x) + self.embed(ids) + self.bag(ids)[:, None]
        x = self.prelu(self.bn(x))
        y = self.bil(x, x)
        y = self.bil(x, x) + self.dot(x)  # twice: one warning
        return self.skipped(self.gated(y))
'''


def test_a_module_with_weights_that_records_nothing_is_warned_about_once(tmp_path,
                                                                            monkeypatch):
    """nn.Bilinear or a custom layer the tracer does not know lost their MACs silently: a
    module that runs with a matrix (or larger) parameter and records nothing, nor do its
    children, is now named in a TraceWarning at the model's line that calls it. Embeddings,
    norms and modules never called are not; nor is one whose einsum is warned about."""
    import warnings

    from hwloop.workloads import TraceWarning

    path = tmp_path / "unseen_mod.py"
    path.write_text(UNSEEN_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "unseen_mod", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w = load_workload("unseen_mod:Net")
    sys.modules.pop("unseen_mod", None)
    assert [(x.name, x.shape) for x in w.layers] == [("gated.fc", (8, 3, 3))]
    assert all(warning.category is TraceWarning for warning in caught)
    lines = UNSEEN_NET.splitlines()
    assert [(warning.filename, lines[warning.lineno - 1].strip()) for warning in caught] == [
        (str(path), "y = self.bil(x, x)"),
        (str(path), "y = self.bil(x, x) + self.dot(x)  # twice: one warning"),
        (str(path), 'return torch.einsum("bij,ij->bij", x, self.scale)'),
    ]
    assert [str(warning.message) for warning in caught] == [
        "workload 'unseen_mod:Net': module 'bil' (Bilinear) has a 3x6x6 parameter 'weight' but "
        "records no layer: its multiplications, if any, are not counted",
        "workload 'unseen_mod:Net': module 'dot' (Tensordot) has a 6x3 parameter 'kernel' but "
        "records no layer: its multiplications, if any, are not counted",
        "workload 'unseen_mod:Net': skipped.einsum 'bij,ij->bij' is not traced (an elementwise "
        "product, no index is contracted): its multiplications are not counted",
    ]


def test_models_whose_work_is_all_recorded_are_not_warned_about(tiny_module, tmp_path,
                                                                monkeypatch):
    import warnings

    import torch
    from torch import nn

    from hwloop.workloads import TraceWarning

    (tmp_path / "mixed_mod.py").write_text(MIXED_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mixed_mod", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TraceWarning)
        for spec in ("TinyNet", "Encoder", "Cross", "Handmade", "make_mlp"):
            load_workload(f"{tiny_module}:{spec}")
        load_workload("mixed_mod:Mixed")
        with torch.device("meta"):
            model = nn.Sequential(nn.Conv3d(2, 4, 3), nn.ConvTranspose3d(4, 2, 2), nn.Flatten(2),
                                  nn.ConvTranspose1d(2, 2, 3), nn.Flatten(1),
                                  nn.Unflatten(1, (1, -1)), nn.GRU(2 * 66, 8))  # (1, 1, 132)
        trace_module(model, name="v", input_shape=(1, 2, 5, 5, 5))
    sys.modules.pop("mixed_mod", None)


def test_layer_modules_called_with_their_input_as_a_keyword_are_traced():
    """``self.fc(input=x)`` is a valid call of a Linear or a convolution; the tracer's hook
    read the positional input alone and failed the trace (IndexError)."""
    import torch
    from torch import nn

    class Keywords(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4 * 6 * 6, 10)

        def forward(self, x):
            return self.fc(input=torch.flatten(self.conv(input=x), 1))

    with torch.device("meta"):
        model = Keywords()
    w = trace_module(model, name="kw", input_shape=(2, 3, 8, 8))
    assert [(x.name, x.shape) for x in w.layers] == [("conv", (72, 4, 27)), ("fc", (2, 10, 144))]


@pytest.mark.parametrize(("text", "line", "message"), [
    # a quoted name holding a line break: the next row starts on line 4
    ('Layer, M, N, K,\n"fc\n1", 4, 4, 4,\nfc2, 4, x, 4,\n', 4, "N must be a positive integer, "
                                                               "not 'x'"),
    # a form feed in a cell is no line break (str.splitlines() broke there: line 4 below)
    ("Layer, M, N, K,\nfc1\x0c, 4, 4, 4,\nfc2, 4, x, 4,\n", 3, "N must be a positive integer, "
                                                              "not 'x'"),
    # a cell over the csv module's field limit was a _csv.Error traceback
    ("Layer, M, N, K,\nfc1" + "x" * 200_000 + ", 4, 4, 4,\n", 2,
     "not a CSV line: field larger than field limit (131072)"),
])
def test_csv_errors_name_the_line_the_row_starts_on(tmp_path, text, line, message):
    path = tmp_path / "layers.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_workload(str(path))
    assert str(info.value) == f"{path}:{line}: {message}"


def test_a_workload_file_behind_a_folder_that_cannot_be_searched(tmp_path, monkeypatch):
    """(As root a chmod 000 folder cannot be made unsearchable: the OSError is simulated.)
    Path.is_dir() raised the PermissionError, a traceback."""
    from pathlib import Path

    real = Path.is_dir

    def is_dir(self):
        if self.name == "g.csv":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "is_dir", is_dir)
    monkeypatch.setattr(Path, "is_file", is_dir)
    with pytest.raises(WorkloadError) as info:
        load_workload(str(tmp_path / "d" / "g.csv"))
    assert str(info.value) == (f"workload file '{tmp_path}/d/g.csv': cannot read: Permission "
                               "denied")


@pytest.mark.parametrize(("where", "message"), [
    ("import", "cannot import module 'exiting_mod': it called sys.exit(2)"),
    ("build", "building the model failed: it called sys.exit(None)"),
    ("forward", "forward pass with input shape [1, 4] failed: it called sys.exit(0)"),
])
def test_a_model_that_calls_sys_exit_is_a_workload_error(tmp_path, monkeypatch, capsys, where,
                                                         message):
    """A module whose code calls sys.exit() (a script's argparse at import) ended hwloop with
    that exit code and no output: `sim systolic --workload sys:exit` exited 0."""
    body = {
        "import": "import sys\nsys.exit(2)\n",
        "build": "import sys\n\n\ndef Net():\n    sys.exit()\n",
        "forward": ("import sys\nfrom torch import nn\n\n\nclass Net(nn.Linear):\n"
                    "    def __init__(self):\n        super().__init__(4, 2)\n\n"
                    "    def forward(self, x):\n        sys.exit(0)\n"),
    }[where]
    (tmp_path / "exiting_mod.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "exiting_mod", raising=False)
    code, out, err = run_main(capsys, ["sim", "systolic", "--workload", "exiting_mod:Net",
                                       "--fidelity", "model"])
    assert (code, out) == (2, "")
    assert err == f"hwloop: error: workload 'exiting_mod:Net': {message}\n"
    sys.modules.pop("exiting_mod", None)
