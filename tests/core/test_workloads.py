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
