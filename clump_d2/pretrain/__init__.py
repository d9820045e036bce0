"""Galaxy-pretrained encoders: the stand-in for Zoobot, trained on real galaxy images here.

* :mod:`.images`: a folder of galaxy JPEGs with one sub-folder per class (e.g.
  ``gz2_sdss_1400/jpegs/{spiral,non_spiral}``), read as central crops resized to a small square,
  and a deterministic split by galaxy into pretraining and held-out galaxies.
* :mod:`.augment`: augmentations that respect the sky (flips, 90-degree rotations, small shifts
  and scale, PSF blur, noise); never a colour change, because colour is physics.
* :mod:`.encoder`: the timm encoder (its ``features_only`` form, as the detector's backbone
  builds it), its initialisation (random, ImageNet, any ``MODEL.ZOOBOT.WEIGHTS`` source) and the
  hub-layout output (``config.json`` + ``model.safetensors``) that ``MODEL.ZOOBOT.WEIGHTS``
  reads.
* :mod:`.train`: supervised (morphology label) and self-supervised (VICReg) pretraining,
  resumable per epoch, deterministic given the seed.
* :mod:`.probe`: the linear probe (logistic regression on pooled features of held-out
  galaxies) that shows what an encoder learnt.

Layer: above ``modeling``, below ``evaluation``/``engine``; imports only ``structures``,
``config``, ``data`` and ``modeling``.
"""
