"""Workloads: lists of GEMM layers that an accelerator is evaluated on.

A workload comes from one of three places (:func:`load_workload`):

- a built-in network name (:data:`hwloop.networks.BUILTINS`: ``resnet50``, ``bert-base``,
  ``dqn``, ``mlp``, ...);
- a SCALE-Sim topology CSV, as SCALE-Sim reads it: convolution layers
  (``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter,
  Strides,``) or GEMM layers (``Layer Name, M, N, K,``), told apart by the header;
- ``module:attr`` naming a ``torch.nn.Module`` (a class, an instance or a factory) whose
  convolutions (1-D to 3-D, transposed too), ``Linear``, ``MultiheadAttention`` and recurrent
  (``RNN``/``LSTM``/``GRU`` and cells) layers, and the products, convolutions and einsums its
  code writes as torch calls, are traced on the meta device (no real weights;
  :func:`trace_module`).

A convolution is lowered to a GEMM by im2col: M = output pixels (Ho x Wo x batch), N = filters,
K = Fh x Fw x channels. Like SCALE-Sim, the CSV IFMAP dimensions are taken as already padded
and the convolution is *valid*: Ho = (H - Fh) // stride + 1. The built-in networks therefore
list padded input sizes (ResNet-50's first layer: 230x230 for a 224x224 image with padding 3).
"""

from __future__ import annotations

import copy
import csv
import importlib
import io
import math
import operator
import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwloop.errors import ConfigError, HwloopWarning, WorkloadError
from hwloop.paths import read_user_text
from hwloop.validate import is_int, plain_int, plain_ints

KINDS = ("gemm", "conv")

CONV_HEADER = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
               "Channels", "Num Filter", "Strides")
GEMM_HEADER = ("Layer Name", "M", "N", "K")


@dataclass(frozen=True, kw_only=True)
class Layer:
    """One layer as the GEMM ``C[m, n] = sum_k A[m, k] B[k, n]`` it lowers to.

    For a convolution the original dimensions are kept too (``ifmap_h`` ... ``stride``), already
    padded (valid convolution); a traced one with unequal strides or a dilation, which
    SCALE-Sim's conv form cannot say, has no ``stride``. A 1-D convolution is one of IFMAP
    height 1 and filter height 1 (the same im2col GEMM). ``repeat`` counts identical copies
    (e.g. attention heads or the groups of a grouped convolution).
    """

    name: str
    kind: str = "gemm"
    m: int
    n: int
    k: int
    repeat: int = 1
    ifmap_h: int | None = None
    ifmap_w: int | None = None
    filter_h: int | None = None
    filter_w: int | None = None
    channels: int | None = None
    num_filters: int | None = None
    stride: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise WorkloadError(
                f"layer {self.name!r}: kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        # numpy integers are stored as int (to_dict is written as JSON)
        plain_ints(self, "m", "n", "k", "repeat", "ifmap_h", "ifmap_w", "filter_h", "filter_w",
                   "channels", "num_filters", "stride")
        for dim in ("m", "n", "k", "repeat"):
            value = getattr(self, dim)
            if not is_int(value) or value < 1:
                raise WorkloadError(
                    f"layer {self.name!r}: {dim} must be a positive integer, not {value!r}")

    @classmethod
    def conv(cls, name: str, *, ifmap_h: int, ifmap_w: int, filter_h: int, filter_w: int,
             channels: int, num_filters: int, stride: int = 1, batch: int = 1,
             repeat: int = 1) -> Layer:
        """A valid (already padded) convolution, lowered to a GEMM by im2col."""
        dims = dict(ifmap_h=ifmap_h, ifmap_w=ifmap_w, filter_h=filter_h, filter_w=filter_w,
                    channels=channels, num_filters=num_filters, stride=stride, batch=batch)
        dims = {dim: plain_int(value) for dim, value in dims.items()}  # numpy integers: int
        for dim, value in dims.items():
            if not is_int(value) or value < 1:
                raise WorkloadError(
                    f"layer {name!r}: {dim} must be a positive integer, not {value!r}")
        ifmap_h, ifmap_w, filter_h, filter_w, channels, num_filters, stride, batch = dims.values()
        if filter_h > ifmap_h or filter_w > ifmap_w:
            raise WorkloadError(
                f"layer {name!r}: filter {filter_h}x{filter_w} is larger than the IFMAP "
                f"{ifmap_h}x{ifmap_w}")
        out_h = (ifmap_h - filter_h) // stride + 1
        out_w = (ifmap_w - filter_w) // stride + 1
        return cls(name=name, kind="conv", m=out_h * out_w * batch, n=num_filters,
                   k=filter_h * filter_w * channels, repeat=repeat, ifmap_h=ifmap_h,
                   ifmap_w=ifmap_w, filter_h=filter_h, filter_w=filter_w, channels=channels,
                   num_filters=num_filters, stride=stride)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of all ``repeat`` copies."""
        return self.m * self.n * self.k * self.repeat

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.m, self.n, self.k)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Workload:
    name: str
    layers: tuple[Layer, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise WorkloadError(f"workload {self.name!r} has no layers")

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def select(self, *, layers: Iterable[str] | None = None, first: int | None = None
               ) -> Workload:
        """The named layers (in workload order) and/or the first ``first`` of them."""
        chosen = list(self.layers)
        if layers is not None:
            wanted = list(layers)
            names = {layer.name for layer in chosen}
            for name in wanted:
                if name not in names:
                    known = ", ".join(layer.name for layer in chosen[:8])
                    more = ", ..." if len(chosen) > 8 else ""
                    raise WorkloadError(
                        f"workload {self.name!r} has no layer {name!r} (has {known}{more})")
            chosen = [layer for layer in chosen if layer.name in set(wanted)]
        if first is not None:
            first = plain_int(first)
            if not is_int(first) or first < 1:
                raise WorkloadError(f"first must be a positive integer, not {first!r}")
            chosen = chosen[:first]
        return Workload(self.name, tuple(chosen))


def load_workload(spec: str | Workload) -> Workload:
    """A workload from a built-in name, a SCALE-Sim CSV file or ``module:attr``."""
    from hwloop.networks import BUILTINS

    if isinstance(spec, Workload):
        return spec
    if not isinstance(spec, str) or not spec:
        raise WorkloadError(f"a workload must be a name, a .csv file or module:attr, not {spec!r}")
    if spec in BUILTINS:
        return BUILTINS[spec]()
    try:
        a_file = Path(spec).is_file()
    except OSError:  # inside a folder that cannot be searched: not_a_workload_file says so
        a_file = True
    if spec.lower().endswith(".csv") or a_file:
        return load_topology_csv(spec)
    if ":" in spec:
        return load_torch_module(spec)
    raise WorkloadError(
        f"unknown workload {spec!r} (known: {', '.join(sorted(BUILTINS))}; "
        "or a SCALE-Sim topology .csv file, or module:attr naming a torch.nn.Module)")


# --- SCALE-Sim topology CSV ----------------------------------------------------------------------

def _positive(path: Path, line: int, column: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError.at(path, line, f"{column} must be a positive integer, not {text!r}"
                             ) from None
    if value < 1:
        raise ConfigError.at(path, line, f"{column} must be a positive integer, not {value}")
    return value


def not_a_workload_file(path: Path) -> str | None:
    """Why ``path`` names no workload file to read (a folder, nothing), or None."""
    try:
        if path.is_dir():
            return f"workload file {str(path)!r} is a folder"
        if not path.is_file():
            return f"workload file {str(path)!r} does not exist"
    except OSError as exc:  # a folder on the way that cannot be searched
        return f"workload file {str(path)!r}: cannot read: {exc.strerror or exc}"
    return None


def load_topology_csv(path: str | Path) -> Workload:
    """Layers from a SCALE-Sim topology file (convolution or GEMM form, trailing comma allowed)."""
    path = Path(path)
    unreadable = not_a_workload_file(path)
    if unreadable:
        raise WorkloadError(unreadable)
    text = read_user_text(path, error=WorkloadError)
    # numbered by the line each row starts on: a quoted cell may hold a line break, and
    # characters str.splitlines() would break at (form feed, U+2028) are no line break here
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            rows.append((start, [cell.strip() for cell in row]))
            start = reader.line_num + 1
    except csv.Error as exc:  # a cell over the csv module's field limit, a NUL byte
        raise ConfigError.at(path, start, f"not a CSV line: {exc}") from None
    rows = [(number, cells) for number, cells in rows if any(cells)]
    # SCALE-Sim writes a trailing comma on every line: drop the empty last cells
    for _, cells in rows:
        while cells and cells[-1] == "":
            cells.pop()
    if not rows:
        raise ConfigError.at(path, None, "empty topology file")
    header_line, header = rows[0]
    lowered = [cell.lower() for cell in header]
    if len(lowered) >= 2 and lowered[1] == "ifmap height":
        columns = CONV_HEADER
    elif len(lowered) >= 2 and lowered[1] == "m":
        columns = GEMM_HEADER
    else:
        raise ConfigError.at(
            path, header_line,
            f"unrecognized header (expected '{', '.join(CONV_HEADER)},' or "
            f"'{', '.join(GEMM_HEADER)},')")
    if len(header) != len(columns):
        raise ConfigError.at(path, header_line,
                             f"expected {len(columns)} header fields, got {len(header)}")
    layers: list[Layer] = []
    seen: set[str] = set()
    for number, cells in rows[1:]:
        if len(cells) != len(columns):
            raise ConfigError.at(path, number,
                                 f"expected {len(columns)} fields ({', '.join(columns)}), "
                                 f"got {len(cells)}")
        name = cells[0]
        if not name:
            raise ConfigError.at(path, number, "empty layer name")
        if name in seen:
            raise ConfigError.at(path, number, f"duplicate layer name {name!r}")
        seen.add(name)
        values = [_positive(path, number, column, cell)
                  for column, cell in zip(columns[1:], cells[1:], strict=True)]
        if columns is GEMM_HEADER:
            m, n, k = values
            layers.append(Layer(name=name, kind="gemm", m=m, n=n, k=k))
            continue
        ifmap_h, ifmap_w, filter_h, filter_w, channels, num_filters, stride = values
        if filter_h > ifmap_h:
            raise ConfigError.at(path, number,
                                 f"Filter Height {filter_h} is larger than IFMAP Height {ifmap_h}")
        if filter_w > ifmap_w:
            raise ConfigError.at(path, number,
                                 f"Filter Width {filter_w} is larger than IFMAP Width {ifmap_w}")
        layers.append(Layer.conv(name, ifmap_h=ifmap_h, ifmap_w=ifmap_w, filter_h=filter_h,
                                 filter_w=filter_w, channels=channels, num_filters=num_filters,
                                 stride=stride))
    if not layers:
        raise ConfigError.at(path, None, "no layers after the header")
    return Workload(path.stem, tuple(layers))


def write_topology_csv(workload: Workload, path: str | Path, *, form: str = "gemm") -> None:
    """Write ``workload`` as a SCALE-Sim topology file (``form`` "gemm" or "conv").

    The conv form needs every layer to be a convolution; repeats are written as copies.
    """
    lines: list[str] = []
    if form == "gemm":
        lines.append(", ".join(GEMM_HEADER) + ",")
        for layer in workload.layers:
            for copy in range(layer.repeat):
                suffix = f"_{copy}" if layer.repeat > 1 else ""
                lines.append(f"{layer.name}{suffix}, {layer.m}, {layer.n}, {layer.k},")
    elif form == "conv":
        lines.append(", ".join(CONV_HEADER) + ",")
        for layer in workload.layers:
            if layer.kind != "conv":
                raise WorkloadError(f"layer {layer.name!r} is not a convolution")
            if layer.stride is None:
                raise WorkloadError(f"layer {layer.name!r} has unequal strides or a dilation, "
                                    "which the conv form cannot say: write the gemm form")
            for copy in range(layer.repeat):
                suffix = f"_{copy}" if layer.repeat > 1 else ""
                lines.append(
                    f"{layer.name}{suffix}, {layer.ifmap_h}, {layer.ifmap_w}, {layer.filter_h}, "
                    f"{layer.filter_w}, {layer.channels}, {layer.num_filters}, {layer.stride},")
    else:
        raise WorkloadError(f"form must be gemm or conv, not {form!r}")
    Path(path).write_text("\n".join(lines) + "\n")


# --- torch.nn.Module tracing ---------------------------------------------------------------------

DEFAULT_IMAGE = 224  # input height/width when a model with a Conv2d first does not say


def importable_from_cwd() -> None:
    """Put the current folder on the import path, as ``python -c`` has it: the ``hwloop``
    script's own path does not hold it, and ``module:attr`` names a user's module there."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def _failure(exc: BaseException) -> str:
    """What went wrong in the user's code, for a one-line error. A ``sys.exit()`` there (a
    script's argparse, say) is a failure too: it would end hwloop with that code, silently."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def load_torch_module(spec: str) -> Workload:
    """Trace the GEMM layers of ``module:attr`` on the meta device (:func:`trace_module`).

    ``attr`` may be a ``torch.nn.Module`` subclass (built with no arguments), an instance, or a
    factory returning one. The input shape comes from an ``input_shape`` attribute (of the
    module, its class or the factory) or defaults to ``(1, C, 224, 224)`` for a Conv2d first
    layer and ``(1, in_features)`` for a Linear first layer (any other first layer, a Conv1d,
    Conv3d, transposed convolution or recurrent layer, has no default: the attribute is
    needed).
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise WorkloadError(f"workload {spec!r}: expected module:attr")
    importable_from_cwd()
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 — any failure is the user's module
        raise WorkloadError(
            f"workload {spec!r}: cannot import module {module_name!r}: "
            f"{_failure(exc)}".splitlines()[0]) from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise WorkloadError(f"workload {spec!r}: module {module_name!r} has no attribute "
                                f"{attr!r}")
        target = getattr(target, part)
    import torch
    from torch import nn

    input_shape = getattr(target, "input_shape", None)
    try:
        with torch.device("meta"):
            if isinstance(target, nn.Module):
                # an instance holds real weights: trace a meta copy, leave the user's alone
                model = copy.deepcopy(target).to("meta")
            elif callable(target):
                model = target()
            else:
                model = None
    except (Exception, SystemExit) as exc:  # noqa: BLE001
        raise WorkloadError(f"workload {spec!r}: building the model failed: "
                            f"{_failure(exc)}".splitlines()[0]) from None
    if not isinstance(model, nn.Module):
        raise WorkloadError(f"workload {spec!r} is not a torch.nn.Module class, instance or "
                            "factory")
    input_shape = getattr(model, "input_shape", input_shape)
    return trace_module(model, name=attr.split(".")[-1], input_shape=input_shape, spec=spec)


class TraceWarning(HwloopWarning):
    """A call the tracer sees but cannot record as GEMMs: its work is missing from the workload."""


def trace_module(model: Any, *, name: str, input_shape: Iterable[int] | None = None,
                 spec: str | None = None) -> Workload:
    """The GEMM layers ``model`` runs, in execution order, from a meta-tensor forward.

    Recorded are its Conv1d/2d/3d, ConvTranspose1d/2d/3d and Linear layers; the projections and
    per-head products of its MultiheadAttention layers; per layer and direction of an
    RNN/LSTM/GRU, the input projection of all timesteps as one GEMM (``NAME.ih_l0``, M =
    steps x batch, N = gates x hidden, K = that layer's input size) and the recurrent one per
    timestep (``NAME.hh_l0``, M = batch, K = hidden or proj_size, ``repeat`` = steps; a packed
    sequence's steps by batch size), with an LSTM's proj_size projection per timestep
    (``NAME.hr_l0``; the reverse direction's names end in ``_reverse``); an RNN/LSTM/GRU cell's
    two GEMMs per call (``NAME.ih``, ``NAME.hh``); and the products and convolutions its own
    code writes as torch calls (``@``, ``torch.matmul``/``bmm``/``mm``, ``baddbmm``,
    ``addmm``, ``F.linear``, scaled dot-product attention, ``F.conv1d/2d/3d``,
    ``F.conv_transpose1d/2d/3d``, two-operand ``torch.einsum``). 3-D and transposed
    convolutions are ``gemm`` layers (SCALE-Sim's conv form cannot say them).

    A :class:`TraceWarning` names what is not recorded: an einsum that is no matrix product,
    and a module that runs with a parameter of two or more dimensions yet records no layer, nor
    do its children (``nn.Bilinear``, a custom layer using a torch call not listed here), once
    each; ``nn.Embedding``/``EmbeddingBag`` are not warned about (a lookup multiplies
    nothing)."""
    import torch
    from torch import nn

    spec = spec or name
    # MultiheadAttention runs out_proj functionally (its hook never fires): the attention's
    # own hook records it, so it is no leaf of its own and is never counted twice
    inner = {m.out_proj for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    recurrent = (nn.RNNBase, nn.RNNCellBase)  # RNN/LSTM/GRU and their cells
    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
             nn.ConvTranspose3d, nn.Linear, nn.MultiheadAttention, *recurrent)
    leaves = [m for m in model.modules() if isinstance(m, kinds) and m not in inner]
    if input_shape is None:
        if not leaves:
            raise WorkloadError(f"workload {spec!r} has no Conv2d or Linear layers: give it an "
                                "input_shape attribute to trace the torch calls of its code")
        first = leaves[0]
        if isinstance(first, nn.Conv2d):
            input_shape = (1, first.in_channels, DEFAULT_IMAGE, DEFAULT_IMAGE)
        elif isinstance(first, nn.MultiheadAttention):
            input_shape = (1, first.embed_dim)
        elif isinstance(first, nn.Linear):
            input_shape = (1, first.in_features)
        else:  # no size is usual for a sequence, a volume or a transposed convolution's input
            raise WorkloadError(
                f"workload {spec!r}: its first layer is a {type(first).__name__}, which has no "
                "default input size: give it an input_shape attribute")
    shape = _input_shape(input_shape, spec=spec)
    names = {m: n for n, m in model.named_modules()}
    layers: list[Layer] = []
    counts: dict[str, int] = {}
    warned: set[str] = set()

    def label(base: str) -> str:
        counts[base] = counts.get(base, 0) + 1
        return base if counts[base] == 1 else f"{base}#{counts[base]}"

    def tokens(x: Any) -> int:  # rows of the GEMM: every dimension but the features
        return max(math.prod(int(d) for d in x.shape[:-1]), 1)

    def hook(mod: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        base = names.get(mod) or type(mod).__name__.lower()
        x = args[0] if args else kwargs["input"]  # ``self.fc(input=x)`` is a call too
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            layers.append(_conv_layer(label(base), x, mod.weight.shape, mod.stride, mod.padding,
                                      mod.dilation, mod.groups, output.shape))
        elif isinstance(mod, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            layers.append(_transposed_layer(label(base), x, mod.weight.shape, mod.groups))
        else:
            layers.append(Layer(name=label(base), kind="gemm", m=tokens(x), n=mod.out_features,
                                k=mod.in_features))

    def recurrent_hook(mod: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                       output: Any) -> None:
        # the GEMMs an RNN/LSTM/GRU runs, from its weights and input (their shapes are the
        # GEMMs'): per layer and direction the input projection of all timesteps at once, then
        # one recurrent projection (and LSTM proj_size projection) per timestep, `repeat` times
        from torch.nn.utils.rnn import PackedSequence

        base = names.get(mod) or type(mod).__name__.lower()
        x = args[0] if args else kwargs["input"]
        if isinstance(mod, nn.RNNCellBase):  # one timestep: (batch, features) or (features)
            batch = int(x.shape[0]) if x.dim() == 2 else 1
            for part in ("ih", "hh"):
                weight = getattr(mod, f"weight_{part}")
                layers.append(Layer(name=label(f"{base}.{part}"), kind="gemm", m=batch,
                                    n=int(weight.shape[0]), k=int(weight.shape[1])))
            return
        if isinstance(x, PackedSequence):  # rows of all sequences; per step, those still running
            rows = int(x.data.shape[0])
            steps: dict[int, int] = {}
            for size in x.batch_sizes.tolist():  # (on the CPU, even for meta data)
                steps[int(size)] = steps.get(int(size), 0) + 1
        else:
            if x.dim() == 2:  # unbatched: (sequence, features)
                length, batch = int(x.shape[0]), 1
            else:
                length, batch = (int(d) for d in x.shape[:2][::-1 if mod.batch_first else 1])
            rows, steps = length * batch, {batch: length}
        for number in range(mod.num_layers):
            for suffix in ("", "_reverse")[:2 if mod.bidirectional else 1]:
                parts = ("ih", "hh", "hr") if mod.proj_size else ("ih", "hh")
                for part in parts:
                    weight = getattr(mod, f"weight_{part}_l{number}{suffix}")
                    n, k = int(weight.shape[0]), int(weight.shape[1])
                    name = f"{base}.{part}_l{number}{suffix}"
                    if part == "ih":
                        layers.append(Layer(name=label(name), kind="gemm", m=rows, n=n, k=k))
                        continue
                    for size, count in steps.items():
                        layers.append(Layer(name=label(name), kind="gemm", m=size, n=n, k=k,
                                            repeat=count))

    def attention_hook(mod: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                       output: Any) -> None:
        # the projections F.multi_head_attention_forward runs, fused as it fuses them
        base = names.get(mod) or type(mod).__name__.lower()
        given = dict(zip(("query", "key", "value"), args, strict=False)) | kwargs
        query, key, value = given["query"], given["key"], given["value"]
        embed = mod.embed_dim
        if not mod._qkv_same_embed_dim:  # separate weights: kdim or vdim is not embed_dim
            projections = [("q_proj", query, embed), ("k_proj", key, mod.kdim),
                           ("v_proj", value, mod.vdim)]
        elif query is key and key is value:  # self-attention: one packed GEMM
            projections = [("in_proj", query, embed)]
        elif key is value:  # encoder-decoder attention: key and value share one GEMM
            projections = [("q_proj", query, embed), ("kv_proj", key, embed)]
        else:
            projections = [("q_proj", query, embed), ("k_proj", key, embed),
                           ("v_proj", value, embed)]
        for suffix, x, k in projections:
            n = embed * {"in_proj": 3, "kv_proj": 2}.get(suffix, 1)
            layers.append(Layer(name=label(f"{base}.{suffix}"), kind="gemm", m=tokens(x), n=n,
                                k=k))
        # the products per head, as the built-in bert-base has them
        batched = query.dim() == 3
        batch = (query.shape[0 if mod.batch_first else 1]) if batched else 1
        seq_q, seq_k = (int(t.shape[-2 if mod.batch_first or not batched else 0])
                        for t in (query, key))
        head = embed // mod.num_heads
        heads = int(batch) * mod.num_heads
        layers.append(Layer(name=label(f"{base}.scores"), kind="gemm", m=seq_q, n=seq_k, k=head,
                            repeat=heads))
        layers.append(Layer(name=label(f"{base}.context"), kind="gemm", m=seq_q, n=head,
                            k=seq_k, repeat=heads))
        out = mod.out_proj
        layers.append(Layer(name=label(names.get(out) or f"{base}.out_proj"), kind="gemm",
                            m=tokens(query), n=out.out_features, k=out.in_features))

    # products written as torch calls in the model's own code (q @ k.T, torch.bmm, scaled dot-
    # product attention, F.conv2d, einsum): seen by a torch function mode at the top level only,
    # so the products inside a functional that is itself seen (F.linear, MultiheadAttention's
    # forward) are not
    running = [name]  # the module whose code runs, innermost last: it names the product
    inside: list[Any] = [None]  # ... and the module itself: an nn.Linear's (nn.Conv2d's ...)
    # own hook counts the F.linear (F.conv2d ...) its forward calls, the mode does not (whole)
    said = [0]  # layers recorded and calls warned about, so far
    before: list[int] = []  # ... when each running module was entered
    lost: set[Any] = set()  # modules warned about as recording nothing

    def enter(mod: Any, _inputs: Any) -> None:
        running.append(names.get(mod) or type(mod).__name__.lower())
        inside.append(mod)
        before.append(said[0] + len(layers))

    def leave(mod: Any, *_: Any) -> None:  # (a forward hook's result would replace the output)
        owner = running.pop()
        inside.pop()
        if before.pop() == said[0] + len(layers) and mod not in lost:
            unseen(mod, owner)

    def unseen(mod: Any, owner: str) -> None:
        # a module that ran with a matrix (or larger) of weights yet recorded nothing (nor did
        # its children): the tracer does not know its calls (nn.Bilinear, a custom op), so its
        # work would be lost silently. Embeddings look up rows (no MACs); norms' are vectors
        if isinstance(mod, (nn.Embedding, nn.EmbeddingBag)):
            return
        for parameter, value in mod.named_parameters(recurse=False):
            if value.dim() >= 2:
                lost.add(mod)
                size = "x".join(str(int(d)) for d in value.shape)
                warnings.warn(f"workload {spec!r}: module {owner!r} ({type(mod).__name__}) "
                              f"has a {size} parameter {parameter!r} but records no layer: its "
                              "multiplications, if any, are not counted", TraceWarning,
                              stacklevel=_model_line())
                return

    def product(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        owner = running[-1]
        if func in whole:
            if isinstance(inside[-1], whole[func]):  # its module's hook counts it
                return
            given = dict(zip(whole_args[func], args, strict=False)) | kwargs
            x, weight = given["input"], given["weight"]
            if func is F.linear:  # in the model's own code (a weight-tied head)
                layers.append(Layer(name=label(f"{owner}.linear"), kind="gemm", m=tokens(x),
                                    n=int(weight.shape[0]) if weight.dim() == 2 else 1,
                                    k=int(weight.shape[-1])))
            elif func in transposed:
                layers.append(_transposed_layer(label(f"{owner}.{func.__name__}"), x,
                                                weight.shape, given.get("groups", 1)))
            else:  # F.conv1d, conv2d, conv3d: recorded as their modules' hook records them
                layers.append(_conv_layer(
                    label(f"{owner}.{func.__name__}"), x, weight.shape, given.get("stride", 1),
                    given.get("padding", 0), given.get("dilation", 1), given.get("groups", 1),
                    result.shape))
            return
        if func is torch.einsum:
            equation, *operands = args
            if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
                operands = list(operands[0])  # the old form: the operands in one list
            if len(operands) < 2:  # a transpose, a sum or a diagonal: no multiplication
                return
            gemm = _einsum_gemm(equation, operands)
            if isinstance(gemm, str):  # skipped, as other calls that are no GEMM are
                message = (f"workload {spec!r}: {owner}.einsum {equation!r} is not traced "
                           f"({gemm}): its multiplications are not counted")
                said[0] += 1  # (said: the module that calls it is not warned about too)
                if message not in warned:
                    warned.add(message)
                    warnings.warn(message, TraceWarning, stacklevel=_model_line())
                return
            m, n, k, repeat = gemm
            layers.append(Layer(name=label(f"{owner}.einsum"), kind="gemm", m=m, n=n, k=k,
                                repeat=repeat))
            return
        if func is F.scaled_dot_product_attention:
            given = dict(zip(("query", "key", "value"), args, strict=False)) | kwargs
            q, k, v = given["query"], given["key"], given["value"]
            batch = math.prod(int(d) for d in q.shape[:-2])
            seq_q, seq_k = int(q.shape[-2]), int(k.shape[-2])
            layers.append(Layer(name=label(f"{owner}.scores"), kind="gemm", m=seq_q, n=seq_k,
                                k=int(q.shape[-1]), repeat=batch))
            layers.append(Layer(name=label(f"{owner}.context"), kind="gemm", m=seq_q,
                                n=int(v.shape[-1]), k=seq_k, repeat=batch))
            return
        a, b = args[1:3] if func in _ADDING else args[:2]
        a = a.unsqueeze(0) if a.dim() == 1 else a
        b = b.unsqueeze(-1) if b.dim() == 1 else b
        if b.dim() == 2:  # one matrix for every row of a: the rows are m
            m, repeat = tokens(a), 1
        else:
            m = int(a.shape[-2])
            repeat = math.prod(torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
        layers.append(Layer(name=label(f"{owner}.{func.__name__.strip('_')}"), kind="gemm",
                            m=m, n=int(b.shape[-1]), k=int(b.shape[-2]), repeat=int(repeat)))

    class Products(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            result = func(*args, **kwargs)  # first: a convolution's record needs its output
            if func in products:
                product(func, args, kwargs, result)
            return result

    F = torch.nn.functional
    _ADDING = {torch.baddbmm, torch.Tensor.baddbmm, torch.addmm, torch.Tensor.addmm}
    # functionals whose module records them itself (in a forward hook)
    whole = {F.linear: nn.Linear, F.conv1d: nn.Conv1d, F.conv2d: nn.Conv2d, F.conv3d: nn.Conv3d,
             F.conv_transpose1d: nn.ConvTranspose1d, F.conv_transpose2d: nn.ConvTranspose2d,
             F.conv_transpose3d: nn.ConvTranspose3d}
    transposed = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)
    conv_args = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    transposed_args = ("input", "weight", "bias", "stride", "padding", "output_padding",
                       "groups", "dilation")
    whole_args = {F.linear: ("input", "weight", "bias")} | dict.fromkeys(
        (F.conv1d, F.conv2d, F.conv3d), conv_args) | dict.fromkeys(transposed, transposed_args)
    products = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm,
                torch.Tensor.mm, torch.bmm, torch.Tensor.bmm, F.scaled_dot_product_attention,
                torch.einsum, *whole, *_ADDING}
    special = {nn.MultiheadAttention: attention_hook, nn.RNNBase: recurrent_hook,
               nn.RNNCellBase: recurrent_hook}

    def register(leaf: Any) -> Any:
        for kind, special_hook in special.items():
            if isinstance(leaf, kind):
                return leaf.register_forward_hook(special_hook, with_kwargs=True)
        return leaf.register_forward_hook(hook, with_kwargs=True)

    # the layers' hooks first: they have recorded when leave() asks whether a module did
    handles = [register(leaf) for leaf in leaves]
    handles += [m.register_forward_pre_hook(enter) for m in model.modules()]
    handles += [m.register_forward_hook(leave) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad(), Products():
            model(torch.empty(shape, device="meta"))
    except (Exception, SystemExit) as exc:  # noqa: BLE001 — the user's forward failed
        raise WorkloadError(f"workload {spec!r}: forward pass with input shape {list(shape)} "
                            f"failed: {_failure(exc)}".splitlines()[0]) from None
    finally:
        for handle in handles:
            handle.remove()
    if not layers:
        raise WorkloadError(f"workload {spec!r} runs no layer the tracer records (a "
                            "convolution, Linear, MultiheadAttention, RNN/LSTM/GRU or their "
                            "cell, or a product, convolution or einsum as a torch call)")
    return Workload(name, tuple(layers))


def _model_line() -> int:
    """The ``stacklevel`` (for a warning issued by the caller) of the innermost frame outside
    torch and this module: the line of the model's code that made the call, which the warning
    then names instead of the tracer's."""
    import torch

    inside = (os.path.dirname(torch.__file__) + os.sep, __file__)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level if frame is not None else 1


def _per_dim(value: Any, count: int) -> tuple[int, ...]:
    """A convolution's stride/padding/dilation as one int per spatial dimension (it may be one
    int for all, or a sequence)."""
    if isinstance(value, int):
        return (value,) * count
    values = tuple(int(v) for v in value)
    return values * count if len(values) == 1 else values


def _conv_layer(name: str, x: Any, weight_shape: Any, stride: Any, padding: Any, dilation: Any,
                groups: int, output_shape: Any) -> Layer:
    """The im2col GEMM of a 1-D, 2-D or 3-D convolution (a module's or ``F.conv*``'s),
    ``groups`` GEMMs of a group each (``repeat``). A 1-D or 2-D one has SCALE-Sim's conv fields:
    the IFMAP as padded, ``stride`` None where one stride and no dilation cannot say the output
    sizes. A 1-D convolution is recorded as one of IFMAP height 1 and filter height 1: im2col
    lowers it to the same GEMM (M = output positions x batch, N = filters, K = width x
    channels). A 3-D one is a ``gemm`` layer (M = output voxels x batch, N = filters,
    K = kd x kh x kw x channels): the conv form has no depth."""
    spatial = len(weight_shape) - 2
    kernel = [int(d) for d in weight_shape[2:]]
    filters = int(weight_shape[0]) // groups
    if spatial == 3:
        batch = math.prod(int(d) for d in output_shape[:-4])  # an unbatched input: 1
        return Layer(name=name, kind="gemm",
                     m=batch * math.prod(int(d) for d in output_shape[-3:]), n=filters,
                     k=math.prod(kernel) * int(weight_shape[1]), repeat=groups)
    strides, dilations = _per_dim(stride, spatial), _per_dim(dilation, spatial)
    size = [int(d) for d in x.shape[-spatial:]]
    channels = int(x.shape[-spatial - 1])
    batch = math.prod(int(d) for d in x.shape[:-spatial - 1])  # an unbatched input: 1
    if padding == "same":  # dilation * (kernel - 1) in all, uneven if odd
        pad = [d * (k - 1) for d, k in zip(dilations, kernel, strict=True)]
    elif padding == "valid":
        pad = [0] * spatial
    else:
        pad = [2 * p for p in _per_dim(padding, spatial)]
    out = [int(d) for d in output_shape[-spatial:]]
    if spatial == 1:  # one row: the vertical stride is moot, so it is the horizontal one
        kernel, strides, dilations = [1, *kernel], (strides[0], *strides), (1, *dilations)
        size, pad, out = [1, *size], [0, *pad], [1, *out]
    ifmap = [s + p for s, p in zip(size, pad, strict=True)]
    # the conv form (one stride, no dilation) says it only if it gives these outputs
    plain = (strides[0] == strides[1] and tuple(dilations) == (1, 1)
             and all((i - k) // strides[0] + 1 == o
                     for i, k, o in zip(ifmap, kernel, out, strict=True)))
    return Layer(name=name, kind="conv", m=batch * out[0] * out[1], n=filters,
                 k=kernel[0] * kernel[1] * (channels // groups), repeat=groups,
                 ifmap_h=ifmap[0], ifmap_w=ifmap[1], filter_h=kernel[0], filter_w=kernel[1],
                 channels=channels // groups, num_filters=filters,
                 stride=strides[0] if plain else None)


def _transposed_layer(name: str, x: Any, weight_shape: Any, groups: int) -> Layer:
    """A transposed convolution (1-D, 2-D or 3-D) as the GEMM that computes it before its
    col2im scatter: every input position's channels times the weight, M = input positions x
    batch, N = out channels x kernel taps, K = in channels (of a group: ``repeat`` = groups).
    The scatter-add of the M x N products into the output (stride, padding, dilation,
    output_padding) is not on the array; products that padding crops away are counted, as the
    GEMM computes them."""
    in_channels, filters, *kernel = (int(d) for d in weight_shape)
    spatial = len(kernel)
    batch = math.prod(int(d) for d in x.shape[:-spatial - 1])  # an unbatched input: 1
    return Layer(name=name, kind="gemm",
                 m=batch * math.prod(int(d) for d in x.shape[-spatial:]),
                 n=filters * math.prod(kernel), k=in_channels // groups, repeat=groups)


def _einsum_gemm(equation: str, operands: list[Any]) -> tuple[int, int, int, int] | str:
    """``(m, n, k, repeat)`` of an einsum of two operands that is a (batched) matrix product,
    recorded as ``matmul`` records one: indices in both operands and the output are the batch
    (``repeat``); in the first (second) operand and the output only, M (N): rows against a
    shared matrix; in both operands only, K (contracted). Else why it is none (one line)."""
    if len(operands) != 2:  # (one operand multiplies nothing: the caller skips it silently)
        return f"{len(operands)} operands"
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    specs = lhs.split(",")  # two: torch has run the einsum, so the equation fits the operands
    indices: list[list[str]] = []
    sizes: dict[str, int] = {}
    ellipsis = 0
    for spec, tensor in zip(specs, operands, strict=True):
        named = spec.replace("...", "")
        dims = tensor.dim() - len(named) if "..." in spec else 0
        ellipsis = max(ellipsis, dims)
        # ellipsis dimensions align from the right (broadcasting): '.0' is the last
        before, _, after = spec.partition("...")
        labels = [*before, *(f".{dims - 1 - i}" for i in range(dims)), *after]
        for index, size in zip(labels, tensor.shape, strict=True):
            sizes[index] = max(sizes.get(index, 1), int(size))
        indices.append(labels)
    dotted = [f".{ellipsis - 1 - i}" for i in range(ellipsis)]
    if arrow:
        before, _, after = rhs.partition("...")
        output = [*before, *(dotted if "..." in rhs else []), *after]
    else:  # implicit output: the ellipsis, then the indices seen once, in alphabetical order
        seen = [*indices[0], *indices[1]]
        output = dotted + sorted(i for i in set(seen) if seen.count(i) == 1 and i[0] != ".")

    def shown(index: str) -> str:
        return "..." if index.startswith(".") else index

    a, b = indices
    for labels in (a, b):
        for index in labels:
            if labels.count(index) > 1:
                return f"index {shown(index)!r} repeats in one operand"
    for index in a + b:
        if index not in output and (index not in a or index not in b):
            return f"index {shown(index)!r} is summed within one operand"
    batch = [i for i in output if i in a and i in b]
    rows = [i for i in output if i in a and i not in b]
    cols = [i for i in output if i in b and i not in a]
    inner = [i for i in a if i in b and i not in output]
    if not inner and not (rows and cols):
        return "an elementwise product, no index is contracted"

    def prod(group: list[str]) -> int:
        return math.prod(sizes[i] for i in group)

    return prod(rows), prod(cols), prod(inner), prod(batch)


def _input_shape(input_shape: Any, *, spec: str) -> tuple[int, ...]:
    """``input_shape`` as a tuple of dimensions, or a WorkloadError: a dimension of 0 would
    still trace, as one row (``m`` is at least 1), and measure a layer that is not there."""
    error = WorkloadError(f"workload {spec!r}: input_shape must be a sequence of positive "
                          f"integers, not {input_shape!r}")
    if isinstance(input_shape, (str, bytes)):
        raise error
    try:
        dims = list(input_shape)
        shape = tuple(operator.index(d) for d in dims)
    except TypeError:
        raise error from None
    if not shape or any(isinstance(d, bool) for d in dims) or min(shape) < 1:
        raise error
    return shape


def dedupe(layers: Iterable[Layer]) -> list[tuple[Layer, int]]:
    """Distinct GEMM shapes in first-seen order, each with the total repeat of its copies."""
    seen: dict[tuple[int, int, int], int] = {}
    order: list[Layer] = []
    for layer in layers:
        if layer.shape in seen:
            seen[layer.shape] += layer.repeat
        else:
            seen[layer.shape] = layer.repeat
            order.append(layer)
    return [(layer, seen[layer.shape]) for layer in order]
