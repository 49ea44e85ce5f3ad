"""Workloads: lists of GEMM layers that an accelerator is evaluated on.

A workload comes from one of three places (:func:`load_workload`):

- a built-in network name (:data:`hwloop.networks.BUILTINS`: ``resnet50``, ``bert-base``,
  ``dqn``, ``mlp``, ...);
- a SCALE-Sim topology CSV, as SCALE-Sim reads it: convolution layers
  (``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter,
  Strides,``) or GEMM layers (``Layer Name, M, N, K,``), told apart by the header;
- ``module:attr`` naming a ``torch.nn.Module`` (a class, an instance or a factory) whose
  ``Conv2d`` and ``Linear`` layers are traced on the meta device (no real weights).

A convolution is lowered to a GEMM by im2col: M = output pixels (Ho x Wo x batch), N = filters,
K = Fh x Fw x channels. Like SCALE-Sim, the CSV IFMAP dimensions are taken as already padded
and the convolution is *valid*: Ho = (H - Fh) // stride + 1. The built-in networks therefore
list padded input sizes (ResNet-50's first layer: 230x230 for a 224x224 image with padding 3).
"""

from __future__ import annotations

import copy
import csv
import importlib
import math
import operator
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwloop.errors import ConfigError, WorkloadError
from hwloop.paths import read_user_text
from hwloop.validate import is_int, plain_ints

KINDS = ("gemm", "conv")

CONV_HEADER = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
               "Channels", "Num Filter", "Strides")
GEMM_HEADER = ("Layer Name", "M", "N", "K")


@dataclass(frozen=True, kw_only=True)
class Layer:
    """One layer as the GEMM ``C[m, n] = sum_k A[m, k] B[k, n]`` it lowers to.

    For a convolution the original dimensions are kept too (``ifmap_h`` ... ``stride``), already
    padded (valid convolution); a traced one with unequal strides or a dilation, which
    SCALE-Sim's conv form cannot say, has no ``stride``. ``repeat`` counts identical copies
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
        for dim, value in dims.items():
            if not is_int(value) or value < 1:
                raise WorkloadError(
                    f"layer {name!r}: {dim} must be a positive integer, not {value!r}")
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
    if spec.lower().endswith(".csv") or Path(spec).is_file():
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
    if path.is_dir():
        return f"workload file {str(path)!r} is a folder"
    if not path.is_file():
        return f"workload file {str(path)!r} does not exist"
    return None


def load_topology_csv(path: str | Path) -> Workload:
    """Layers from a SCALE-Sim topology file (convolution or GEMM form, trailing comma allowed)."""
    path = Path(path)
    unreadable = not_a_workload_file(path)
    if unreadable:
        raise WorkloadError(unreadable)
    text = read_user_text(path, error=WorkloadError)
    rows = [(number, [cell.strip() for cell in row])
            for number, row in enumerate(csv.reader(text.splitlines()), start=1)]
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


def load_torch_module(spec: str) -> Workload:
    """Trace the GEMM layers of ``module:attr`` on the meta device (:func:`trace_module`).

    ``attr`` may be a ``torch.nn.Module`` subclass (built with no arguments), an instance, or a
    factory returning one. The input shape comes from an ``input_shape`` attribute (of the
    module, its class or the factory) or defaults to ``(1, C, 224, 224)`` for a Conv2d first
    layer and ``(1, in_features)`` for a Linear first layer.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise WorkloadError(f"workload {spec!r}: expected module:attr")
    importable_from_cwd()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 — any import failure is the user's module
        raise WorkloadError(
            f"workload {spec!r}: cannot import module {module_name!r}: "
            f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
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
    except Exception as exc:  # noqa: BLE001
        raise WorkloadError(f"workload {spec!r}: building the model failed: "
                            f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
    if not isinstance(model, nn.Module):
        raise WorkloadError(f"workload {spec!r} is not a torch.nn.Module class, instance or "
                            "factory")
    input_shape = getattr(model, "input_shape", input_shape)
    return trace_module(model, name=attr.split(".")[-1], input_shape=input_shape, spec=spec)


def trace_module(model: Any, *, name: str, input_shape: Iterable[int] | None = None,
                 spec: str | None = None) -> Workload:
    """The Conv2d/Linear layers ``model`` runs, in execution order, from a meta-tensor forward,
    the projections and per-head products of its MultiheadAttention layers, and the products
    its own code writes as torch calls (``@``, ``torch.matmul``/``bmm``/``mm``, ``baddbmm``,
    ``addmm``, ``F.linear``, scaled dot-product attention)."""
    import torch
    from torch import nn

    spec = spec or name
    # MultiheadAttention runs out_proj functionally (its hook never fires): the attention's
    # own hook records it, so it is no leaf of its own and is never counted twice
    inner = {m.out_proj for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    leaves = [m for m in model.modules()
              if isinstance(m, (nn.Conv2d, nn.Linear, nn.MultiheadAttention)) and m not in inner]
    if not leaves:
        raise WorkloadError(f"workload {spec!r} has no Conv2d or Linear layers")
    if input_shape is None:
        first = leaves[0]
        if isinstance(first, nn.Conv2d):
            input_shape = (1, first.in_channels, DEFAULT_IMAGE, DEFAULT_IMAGE)
        elif isinstance(first, nn.MultiheadAttention):
            input_shape = (1, first.embed_dim)
        else:
            input_shape = (1, first.in_features)
    shape = _input_shape(input_shape, spec=spec)
    names = {m: n for n, m in model.named_modules()}
    layers: list[Layer] = []
    counts: dict[str, int] = {}

    def label(base: str) -> str:
        counts[base] = counts.get(base, 0) + 1
        return base if counts[base] == 1 else f"{base}#{counts[base]}"

    def tokens(x: Any) -> int:  # rows of the GEMM: every dimension but the features
        return max(math.prod(int(d) for d in x.shape[:-1]), 1)

    def hook(mod: Any, inputs: tuple[Any, ...], output: Any) -> None:
        base = names.get(mod) or type(mod).__name__.lower()
        x = inputs[0]
        if isinstance(mod, nn.Conv2d):
            groups = mod.groups
            # (C, H, W) is an unbatched input: batch 1
            batch, channels, height, width = (1, *x.shape) if x.dim() == 3 else x.shape
            if mod.padding == "same":  # dilation * (kernel - 1) in all, uneven if odd
                pad = [d * (k - 1) for d, k in zip(mod.dilation, mod.kernel_size, strict=True)]
            elif mod.padding == "valid":
                pad = [0, 0]
            else:
                pad = [2 * p for p in mod.padding]
            ifmap_h, ifmap_w = int(height + pad[0]), int(width + pad[1])
            out_h, out_w = output.shape[-2:]
            stride_h, stride_w = mod.stride
            # the conv form (one stride, no dilation) says it only if it gives these outputs
            plain = (stride_h == stride_w and tuple(mod.dilation) == (1, 1)
                     and (ifmap_h - mod.kernel_size[0]) // stride_h + 1 == out_h
                     and (ifmap_w - mod.kernel_size[1]) // stride_w + 1 == out_w)
            layers.append(Layer(
                name=label(base), kind="conv", m=int(batch * out_h * out_w),
                n=mod.out_channels // groups,
                k=mod.kernel_size[0] * mod.kernel_size[1] * (channels // groups),
                repeat=groups, ifmap_h=ifmap_h, ifmap_w=ifmap_w,
                filter_h=mod.kernel_size[0], filter_w=mod.kernel_size[1],
                channels=int(channels // groups), num_filters=mod.out_channels // groups,
                stride=stride_h if plain else None))
        else:
            layers.append(Layer(name=label(base), kind="gemm", m=tokens(x), n=mod.out_features,
                                k=mod.in_features))

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
    # product attention): seen by a torch function mode at the top level only, so the products
    # inside a functional that is itself seen (F.linear, MultiheadAttention's forward) are not
    running = [name]  # the module whose code runs, innermost last: it names the product
    linears = [False]  # ... and whether it is an nn.Linear, whose own hook counts its F.linear

    def enter(mod: Any, _inputs: Any) -> None:
        running.append(names.get(mod) or type(mod).__name__.lower())
        linears.append(isinstance(mod, nn.Linear))

    def leave(*_: Any) -> None:  # (a forward hook's result would replace the output)
        running.pop()
        linears.pop()

    pre = [m.register_forward_pre_hook(enter) for m in model.modules()]
    post = [m.register_forward_hook(leave) for m in model.modules()]

    def product(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        owner = running[-1]
        if func is F.linear:  # in the model's own code (a weight-tied head), not nn.Linear's
            if not linears[-1]:
                given = dict(zip(("input", "weight"), args, strict=False)) | kwargs
                x, weight = given["input"], given["weight"]
                layers.append(Layer(name=label(f"{owner}.linear"), kind="gemm", m=tokens(x),
                                    n=int(weight.shape[0]) if weight.dim() == 2 else 1,
                                    k=int(weight.shape[-1])))
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
            if func in products:
                product(func, args, kwargs)
            return func(*args, **kwargs)

    F = torch.nn.functional
    _ADDING = {torch.baddbmm, torch.Tensor.baddbmm, torch.addmm, torch.Tensor.addmm}
    products = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm,
                torch.Tensor.mm, torch.bmm, torch.Tensor.bmm, F.scaled_dot_product_attention,
                F.linear, *_ADDING}
    handles = [leaf.register_forward_hook(attention_hook, with_kwargs=True)
               if isinstance(leaf, nn.MultiheadAttention) else leaf.register_forward_hook(hook)
               for leaf in leaves] + pre + post
    try:
        model.eval()
        with torch.no_grad(), Products():
            model(torch.empty(shape, device="meta"))
    except Exception as exc:  # noqa: BLE001 — the user's forward failed
        raise WorkloadError(f"workload {spec!r}: forward pass with input shape {list(shape)} "
                            f"failed: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    finally:
        for handle in handles:
            handle.remove()
    return Workload(name, tuple(layers))


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
