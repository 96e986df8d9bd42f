"""BRL, balanced representation learning for long-tailed skeleton action recognition (Liu et al., 2023; public code
firework8/BRL), as parts that any backbone's training can switch on one by one (:class:`BRLConfig`):

- :mod:`mmcl.brl.mixup`: spatial-temporal action exploration, the rebalanced partial mixup (upper body of one sample,
  lower body of another, label weights by body share with the rarer class winning under strong imbalance), applied to
  the training batch;
- :mod:`mmcl.brl.losses`: the detached action-aware learning schedule, deferred re-weighting (plain cross-entropy
  first, class weights from a configured epoch) and the action-aware class weights;
- the skip modality (each joint minus its 2-hop ancestor) is a stream of the data transforms
  (:func:`mmcl.data.transforms.skip_pairs`), fused with the other streams by ``mmcl ensemble``.

The long-tailed splits themselves are in :mod:`mmcl.data.longtail`. Import the submodules (``mmcl.brl.config`` stays
free of torch, so that reading a configuration does not load it).
"""
