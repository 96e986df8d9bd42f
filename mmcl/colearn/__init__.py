"""Training-time co-learning from cached teacher features; inference never sees them.

- :mod:`mmcl.colearn.config`: the ``colearn`` section of a training config (torch-free);
- :mod:`mmcl.colearn.build`: :func:`~mmcl.colearn.build.build_colearner` turns it into the heads (a
  :class:`~mmcl.colearn.build.CoLearner`) and joins the training split with the teacher cache (:mod:`.data`);
- the heads: :mod:`.fam`, :mod:`.frm`, :mod:`.openvocab`, and the cross-modal variants :mod:`.mmixer` and
  :mod:`.deformable` (:mod:`.crossmodal`), which train the skeleton-only paths of the deployable models in
  :mod:`mmcl.models`;
- :mod:`mmcl.colearn.heads`: a run's heads saved with their configs, and :func:`~mmcl.colearn.heads.load_head`.

This package imports from :mod:`mmcl.models`, never the reverse: a deployed model needs none of it.
"""
