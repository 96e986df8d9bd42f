"""Looking at skeletons: ``mmcl show`` (:mod:`mmcl.viz.show`) animates samples and predictions."""
