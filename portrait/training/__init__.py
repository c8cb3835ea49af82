"""The model workshop: everything that makes, measures and packages the app's model.

The app's runtime (``portrait/`` outside this folder) never imports it; these modules import the
runtime, so a model is trained, scored and exported through the same code that runs it live.

- ``model``: ``build_unet()``, the MobileNetV2-UNet;
- ``data``, ``losses``, ``metrics``: the ``tf.data`` pipeline and augmentations, the loss terms,
  IoU / Dice / boundary F;
- ``train``, ``distill``, ``ensemble``, ``export``: the commands that make model files;
- ``evaluate``, ``bench``: the commands that score a model on photos and time the whole app
  against its peer (``python -m portrait.evaluate`` and ``python -m portrait.bench``).
"""
