"""Using a deployable checkpoint (:mod:`mmcl.models.checkpoint`) outside training: ``mmcl predict``
(:mod:`mmcl.deploy.predict`), ``mmcl export`` to ONNX (:mod:`mmcl.deploy.export`) and the export run by onnxruntime
(:mod:`mmcl.deploy.runtime`).

Imports nothing from training (:mod:`mmcl.colearn`, :mod:`mmcl.engine`, ``teachers``): the deployed model is the
skeleton model alone.
"""
