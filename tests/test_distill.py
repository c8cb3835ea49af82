"""Knowledge distillation: teachers' predictions mixed into the training targets."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import constant_model
from portrait.distill import load_teachers, mix_targets, with_teachers
from portrait.errors import ModelError


def test_targets_mix_the_mask_with_the_teachers_mean(tmp_path):
    teachers = load_teachers([constant_model(tmp_path / "a.h5", 0.8),
                              constant_model(tmp_path / "b.h5", 0.2)])
    images = tf.zeros((2, 8, 8, 3))
    masks = tf.concat([tf.ones((1, 8, 8, 1)), tf.zeros((1, 8, 8, 1))], axis=0)
    # teachers' mean 0.5; mask 1 -> 0.75 and mask 0 -> 0.25 at weight 0.5
    mixed = mix_targets(images, masks, teachers, 0.5).numpy()
    np.testing.assert_allclose(mixed[0], 0.75, atol=1e-6)
    np.testing.assert_allclose(mixed[1], 0.25, atol=1e-6)
    np.testing.assert_allclose(mix_targets(images, masks, teachers[:1], 1.0).numpy(), 0.8, atol=1e-6)
    np.testing.assert_allclose(mix_targets(images, masks, teachers, 0.0).numpy(), masks.numpy())


def test_dataset_with_teachers_keeps_images_and_mixes_masks(tmp_path):
    teachers = load_teachers([constant_model(tmp_path / "a.h5", 0.9)])
    images = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((images, np.zeros((4, 16, 16, 1), np.float32))).batch(2)
    batches = list(with_teachers(ds, teachers, 0.25))
    assert len(batches) == 2
    np.testing.assert_array_equal(batches[0][0].numpy(), images[:2])
    np.testing.assert_allclose(batches[1][1].numpy(), 0.225, atol=1e-6)


def test_bad_teachers_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="nope.hdf5"):
        load_teachers([str(tmp_path / "nope.hdf5")])
    with pytest.raises(ModelError, match="2 output channels; a person probability \\(1\\) is needed"):
        load_teachers([constant_model(tmp_path / "two.h5", 0.5, channels=2)])
    with pytest.raises(ValueError, match="between 0 and 1, got 1.5"):
        mix_targets(tf.zeros((1, 4, 4, 3)), tf.zeros((1, 4, 4, 1)),
                    load_teachers([constant_model(tmp_path / "a.h5", 0.5)]), 1.5)
