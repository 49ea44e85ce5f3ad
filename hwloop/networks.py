"""Built-in workloads with the real layer shapes of well-known networks (batch 1 unless noted).

Convolutions list padded IFMAP sizes, as SCALE-Sim topology files do (see hwloop.workloads).
"""

from __future__ import annotations

from collections.abc import Callable

from hwloop.workloads import Layer, Workload


def _conv(name: str, size: int, filt: int, channels: int, filters: int, stride: int = 1,
          pad: int | None = None) -> Layer:
    pad = (filt - 1) // 2 if pad is None else pad
    return Layer.conv(name, ifmap_h=size + 2 * pad, ifmap_w=size + 2 * pad, filter_h=filt,
                      filter_w=filt, channels=channels, num_filters=filters, stride=stride)


def resnet50() -> Workload:
    """ResNet-50 v1.5 (torchvision) on a 224x224 image: 53 convolutions and the classifier."""
    layers = [_conv("conv1", 224, 7, 3, 64, stride=2, pad=3)]
    size = 56  # after the 3x3/2 max-pool
    channels = 64
    for stage, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), start=2):
        for block in range(blocks):
            stride = 2 if stage > 2 and block == 0 else 1
            prefix = f"res{stage}{chr(ord('a') + block)}"
            layers.append(_conv(f"{prefix}_1x1a", size, 1, channels, width))
            layers.append(_conv(f"{prefix}_3x3", size, 3, width, width, stride=stride))
            out_size = size // stride
            layers.append(_conv(f"{prefix}_1x1b", out_size, 1, width, 4 * width))
            if block == 0:
                layers.append(_conv(f"{prefix}_proj", size, 1, channels, 4 * width,
                                    stride=stride))
            size = out_size
            channels = 4 * width
    layers.append(Layer(name="fc", m=1, n=1000, k=2048))
    return Workload("resnet50", tuple(layers))


def bert_base(seq: int = 128) -> Workload:
    """BERT-base encoder (12 layers, hidden 768, 12 heads, FFN 3072) on a 128-token sequence.

    Attention score and context products are per head (``repeat`` 12).
    """
    hidden, heads, ffn = 768, 12, 3072
    head = hidden // heads
    layers: list[Layer] = []
    for index in range(12):
        p = f"enc{index}"
        layers += [
            Layer(name=f"{p}.q", m=seq, n=hidden, k=hidden),
            Layer(name=f"{p}.k", m=seq, n=hidden, k=hidden),
            Layer(name=f"{p}.v", m=seq, n=hidden, k=hidden),
            Layer(name=f"{p}.scores", m=seq, n=seq, k=head, repeat=heads),
            Layer(name=f"{p}.context", m=seq, n=head, k=seq, repeat=heads),
            Layer(name=f"{p}.out", m=seq, n=hidden, k=hidden),
            Layer(name=f"{p}.ffn1", m=seq, n=ffn, k=hidden),
            Layer(name=f"{p}.ffn2", m=seq, n=hidden, k=ffn),
        ]
    return Workload("bert-base", tuple(layers))


def dqn() -> Workload:
    """The Atari DQN of Mnih et al. (Nature 2015): 84x84x4 frames, 18 actions."""
    return Workload("dqn", (
        Layer.conv("conv1", ifmap_h=84, ifmap_w=84, filter_h=8, filter_w=8, channels=4,
                   num_filters=32, stride=4),
        Layer.conv("conv2", ifmap_h=20, ifmap_w=20, filter_h=4, filter_w=4, channels=32,
                   num_filters=64, stride=2),
        Layer.conv("conv3", ifmap_h=9, ifmap_w=9, filter_h=3, filter_w=3, channels=64,
                   num_filters=64, stride=1),
        Layer(name="fc1", m=1, n=512, k=3136),
        Layer(name="fc2", m=1, n=18, k=512),
    ))


def mlp() -> Workload:
    """A 784-256-256-10 MNIST multilayer perceptron on a batch of 64 images."""
    return Workload("mlp", (
        Layer(name="fc1", m=64, n=256, k=784),
        Layer(name="fc2", m=64, n=256, k=256),
        Layer(name="fc3", m=64, n=10, k=256),
    ))


def tiny() -> Workload:
    """Three small GEMMs (odd sizes) for quick checks and tests."""
    return Workload("tiny", (
        Layer(name="g1", m=12, n=10, k=9),
        Layer(name="g2", m=7, n=5, k=13),
        Layer(name="g3", m=12, n=10, k=9),
    ))


BUILTINS: dict[str, Callable[[], Workload]] = {
    "resnet50": resnet50,
    "bert-base": bert_base,
    "dqn": dqn,
    "mlp": mlp,
    "tiny": tiny,
}
