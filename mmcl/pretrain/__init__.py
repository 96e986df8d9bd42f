"""Self-supervised pre-training of skeleton encoders and the field's evaluation protocols.

- :mod:`mmcl.pretrain.augment`: CMD / HaLP's skeleton augmentations and the two-view dataset;
- :mod:`mmcl.pretrain.moco`: MoCo v2 (queue, momentum key encoder, projection MLP);
- :mod:`mmcl.pretrain.halp`: HaLP's hallucinated positives (:func:`~mmcl.pretrain.halp.hallucinate`);
- :mod:`mmcl.pretrain.sphere`: spherical k-means for HaLP's prototypes;
- :mod:`mmcl.pretrain.skeletonmae`: SkeletonMAE's masked graph autoencoding;
- :mod:`mmcl.pretrain.protocols`: linear evaluation, kNN, label subsets for semi-supervised fine-tuning.
"""
