"""Knowledge distillation: mix teacher models' predictions into the training targets.

A teacher is any Keras model file the app can run (RGB 0..255 in, a 1-channel person
probability out), typically a larger or averaged set of models. On each augmented training
batch the teachers' mean probability is mixed into the mask::

    target = (1 - weight) * mask + weight * mean(teacher(image) for each teacher)

so the student learns the teachers' soft edges and their judgement on ambiguous pixels (a held
object, a second person) along with the labels. Validation keeps the hard labels.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import keras
import tensorflow as tf

from portrait.errors import ModelError
from portrait.keras_compat import load_keras_model

log = logging.getLogger(__name__)


def load_teachers(paths: Sequence[str]) -> list[keras.Model]:
    """Load teacher models for inference only.

    Raises:
        ModelError: a file that is missing, unloadable or unsafe, or whose output is not one
            channel.
    """
    teachers = []
    for path in paths:
        model = load_keras_model(Path(path))
        channels = model.output_shape[-1]
        if channels != 1:
            raise ModelError(
                f"teacher '{path}' has {channels} output channels; a person probability (1) is needed"
            )
        model.trainable = False
        teachers.append(model)
        log.info("teacher: %s (%d parameters)", path, model.count_params())
    return teachers


def mix_targets(images: tf.Tensor, masks: tf.Tensor, teachers: Sequence[keras.Model],
                weight: float) -> tf.Tensor:
    """``(1 - weight) * masks + weight * (mean teacher probability on images)``."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"teacher weight must be between 0 and 1, got {weight}")
    if not teachers:
        raise ValueError("mix_targets needs at least one teacher")
    taught = tf.add_n([tf.cast(t(images, training=False), masks.dtype) for t in teachers])
    taught = taught / float(len(teachers))
    return (1.0 - weight) * masks + weight * taught


def with_teachers(dataset: tf.data.Dataset, teachers: Sequence[keras.Model],
                  weight: float) -> tf.data.Dataset:
    """The batched (images, masks) dataset with the masks replaced by mixed targets."""
    if not teachers or weight == 0:
        return dataset
    mixed = dataset.map(lambda images, masks: (images, mix_targets(images, masks, teachers, weight)))
    return mixed.prefetch(tf.data.AUTOTUNE)  # the teachers run ahead of the training step
