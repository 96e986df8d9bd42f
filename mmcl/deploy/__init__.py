"""Using a deployable checkpoint (:mod:`mmcl.models.checkpoint`) outside training: ``mmcl predict``
(:mod:`mmcl.deploy.predict`).

Imports nothing from training (:mod:`mmcl.colearn`, :mod:`mmcl.engine`, ``teachers``): the deployed model is the
skeleton model alone.
"""
