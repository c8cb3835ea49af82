"""The segmentation model: a MobileNetV2 encoder with a light UNet decoder.

``build_unet()`` reads top to bottom like the diagram::

    RGB 0..255 ─▶ Rescaling(x/127.5-1) ─▶ MobileNetV2 ─┬─ skips at 1/2, 1/4, 1/8 ───────────────┐
                                                       └─ 1/16 (or 1/32) ─▶ [context] ─▶ decoder ─▶ sigmoid

The normalisation lives inside the model, so a saved model takes RGB 0..255 (the app's contract).
The decoder uses bilinear upsampling and depthwise-separable convolutions, which keeps the
full-resolution stages cheap on a CPU.
"""

from __future__ import annotations

import logging
import warnings
from typing import Optional, Sequence

import keras
from keras import layers

from portrait.options import CONTEXT_MODULES

log = logging.getLogger(__name__)

# MobileNetV2 layer names at each output stride; the last entry is the bottleneck.
ENCODER_SKIPS = {
    2: "block_1_expand_relu",
    4: "block_3_expand_relu",
    8: "block_6_expand_relu",
    16: "block_13_expand_relu",
    32: "block_16_project",
}
DEFAULT_DECODER_FILTERS = (96, 64, 40, 24)
LRASPP_FILTERS = 128


def _lraspp(x, filters: int = LRASPP_FILTERS, name: str = "context"):
    """Lite R-ASPP (Howard et al., "Searching for MobileNetV3", 2019), with a global pool.

    A 1×1 projection of the bottleneck, gated channel by channel by a sigmoid of the whole
    image's mean features. The gate tells each location what the rest of the picture holds
    (is there one person or two, is the thing at the edge part of the main subject), which a
    stride-16 receptive field alone does not see. It works at any input size.
    """
    y = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_proj")(x)
    y = layers.BatchNormalization(name=f"{name}_proj_bn")(y)
    y = layers.ReLU(name=f"{name}_proj_relu")(y)
    g = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    g = layers.Conv2D(filters, 1, activation="sigmoid", name=f"{name}_gate")(g)
    return layers.Multiply(name=f"{name}_gated")([y, g])


def _tail(bottleneck, deep, name: str = "context"):
    """The rest of MobileNetV2 (blocks 13 to 16, output stride 32) added back to the bottleneck.

    A stride-16 encoder stops where each location sees a patch of the frame; blocks 13 to 16 widen
    the theoretical receptive field to most of a webcam frame (9×5 cells at 288×160), though their
    effective reach is much shorter, at least at the start (tests/test_train.py). Their output is
    projected to the bottleneck's channels by a 1×1 convolution that starts at zero, upsampled ×2
    and added, so a model that gains the tail predicts what it did until training puts it to use.
    """
    d = layers.Conv2D(bottleneck.shape[-1], 1, kernel_initializer="zeros", name=f"{name}_tail")(deep)
    d = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_tail_up")(d)
    return layers.Add(name=f"{name}_added")([bottleneck, d])


def _separable_block(x, filters: int, name: str):
    """Depthwise 3×3 + pointwise 1×1, each followed by batch norm and ReLU6."""
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(name=f"{name}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    x = layers.BatchNormalization(name=f"{name}_pw_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_pw_relu")(x)


def _up_block(x, skip, filters: int, name: str):
    """Upsample ×2, project the skip to few channels, concatenate, refine."""
    x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up")(x)
    skip = layers.Conv2D(filters // 2, 1, use_bias=False, name=f"{name}_skip")(skip)
    skip = layers.BatchNormalization(name=f"{name}_skip_bn")(skip)
    skip = layers.ReLU(6.0, name=f"{name}_skip_relu")(skip)
    x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    return _separable_block(x, filters, name=f"{name}_conv")


def _load_encoder_weights(encoder: keras.Model, path: str) -> None:
    """Load a weights file into the encoder.

    Raises:
        ValueError: weights of another network (another width, a whole model), with Keras'
            reason; the warning Keras gives first for each of the ~100 layers it cannot fill is
            dropped, as the error says it all. A load that succeeds gives its warnings as usual.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder.load_weights(path)
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def build_unet(
    input_size: tuple[int, int] = (192, 192),
    alpha: float = 1.0,
    output_stride: int = 16,
    decoder_filters: Sequence[int] = DEFAULT_DECODER_FILTERS,
    backbone_weights: Optional[str] = None,
    fixed_input: bool = True,
    context: str = "none",
) -> keras.Model:
    """Build a MobileNetV2-UNet that maps RGB 0..255 to a person probability.

    Args:
        input_size: (width, height) the model is trained at; need not be square. Both must be
            multiples of ``output_stride``.
        alpha: MobileNetV2 width multiplier (0.35, 0.5, 0.75, 1.0, 1.3, 1.4).
        output_stride: 16 stops the encoder after block 13 (cheaper; usual for segmentation),
            32 uses the whole encoder.
        decoder_filters: channels of the four decoder stages, from 1/8 (or 1/16) up to 1/2.
        backbone_weights: ``"imagenet"`` (needs a download), a path to MobileNetV2 weights for
            ``include_top=False`` (e.g. ``mobilenetv2_1.0_backbone.weights.h5``), or None.
        fixed_input: True gives an input of shape (H, W, 3); False gives (None, None, 3) so the
            model runs at any size that is a multiple of the stride.
        context: ``"none"`` feeds the bottleneck to the decoder as it is; ``"lraspp"`` first
            passes it through a Lite R-ASPP context module (see :func:`_lraspp`); ``"tail"``
            (output stride 16 only) adds the rest of the encoder back to it (see :func:`_tail`).

    Returns:
        A Keras model with input RGB uint8-range floats and a 1-channel sigmoid output of the
        input's spatial size.

    Raises:
        ValueError: an input size that is not a multiple of the stride, a bad stride, an
            unknown context module, or ``backbone_weights`` of another network.
        InputError: ``"imagenet"`` weights that cannot be downloaded.
    """
    width, height = input_size
    if output_stride not in (16, 32):
        raise ValueError(f"output_stride must be 16 or 32, got {output_stride}")
    if width % output_stride or height % output_stride:
        raise ValueError(
            f"input size {width}x{height} must be a multiple of the output stride {output_stride}"
        )
    if context not in CONTEXT_MODULES:
        raise ValueError(f"context must be one of {', '.join(CONTEXT_MODULES)}, got {context!r}")
    if context == "tail" and output_stride != 16:
        raise ValueError("context 'tail' adds blocks 13 to 16 to a stride-16 encoder; "
                         f"output_stride {output_stride} already has them")
    if len(decoder_filters) != 4:
        raise ValueError(f"decoder_filters needs 4 entries, got {len(decoder_filters)}")

    shape = (height, width, 3) if fixed_input else (None, None, 3)
    inputs = keras.Input(shape=shape, name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalise")(inputs)

    imagenet = backbone_weights == "imagenet"
    try:
        with warnings.catch_warnings():
            # ImageNet's file for 224x224 is the only one for any input: its convolutions fit
            # every size, which Keras' warning about it leaves the user to wonder about.
            warnings.filterwarnings("ignore", message=r".*`input_shape` is undefined or non-square")
            encoder = keras.applications.MobileNetV2(
                input_shape=(height, width, 3) if fixed_input else (None, None, 3),
                alpha=alpha,
                include_top=False,
                weights="imagenet" if imagenet else None,
            )
    except Exception as error:  # Keras' get_file raises a bare Exception for a failed fetch
        if not (imagenet and "URL fetch failure" in str(error)):
            raise
        from portrait.errors import InputError
        raise InputError("cannot download ImageNet's MobileNetV2 weights (no internet?); pass "
                         "--backbone FILE with a local weights file (e.g. ../shared/models/"
                         "mobilenetv2_1.0_backbone.weights.h5) or --backbone none") from None
    if backbone_weights and not imagenet:
        _load_encoder_weights(encoder, backbone_weights)
        log.info("encoder weights loaded from %s", backbone_weights)
    # keras.applications builds MobileNetV2 with batch-norm momentum 0.999: its moving statistics
    # then trail the fine-tuned weights by thousands of steps and inference-mode outputs lag far
    # behind training-mode ones. 0.99 (Keras' default) follows within a few hundred steps.
    for layer in encoder.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = 0.99

    skip_strides = (8, 4, 2) if output_stride == 16 else (16, 8, 4, 2)
    names = [ENCODER_SKIPS[output_stride]] + [ENCODER_SKIPS[s] for s in skip_strides]
    if context == "tail":
        names.append(ENCODER_SKIPS[32])
    feature_extractor = keras.Model(
        encoder.input, [encoder.get_layer(n).output for n in names], name="encoder"
    )
    bottleneck, *skips = feature_extractor(x)

    if context == "lraspp":
        y = _lraspp(bottleneck)
    elif context == "tail":
        *skips, deep = skips
        y = _tail(bottleneck, deep)
    else:
        y = bottleneck
    filters = list(decoder_filters)[-len(skips):]
    for i, (skip, f) in enumerate(zip(skips, filters)):
        y = _up_block(y, skip, f, name=f"decoder{i}")
    # Logits at 1/2 resolution, upsampled bilinearly: a full-resolution convolution would cost
    # more than the rest of the decoder, and the app's guided filter refines edges anyway.
    y = layers.Conv2D(1, 1, name="logits")(y)
    y = layers.UpSampling2D(2, interpolation="bilinear", name="logits_up")(y)
    outputs = layers.Activation("sigmoid", name="mask", dtype="float32")(y)
    return keras.Model(inputs, outputs, name=f"mobilenetv2_{alpha:g}_unet")
