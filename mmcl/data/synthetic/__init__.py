"""The built-in synthetic dataset: procedural actions on the NTU-25 skeleton, rendered to RGB, written as raw files.

It lets the whole pipeline (raw files -> teachers -> training -> skeleton-only evaluation -> zero-shot) run on a
laptop with no download. ``mmcl synth --out DIR`` writes it; :func:`generate` does the same from Python.

Modules: :mod:`.kinematics` (the body and forward kinematics), :mod:`.actions` (the class library), :mod:`.camera`
(the Kinect-like camera), :mod:`.scene` (a performance and one camera's record of it), :mod:`.render` (RGB video),
:mod:`.writer` (``.skeleton`` and ``.mat`` files), :mod:`.dataset` (the dataset), :mod:`.baselines` (reference
classifiers that measure how hard the set is), :mod:`.cli` (``mmcl synth``).
"""

from mmcl.data.synthetic.actions import SOURCE_CLASSES, UTD_CLASSES, UTD_LABEL_MAP, ActionClass
from mmcl.data.synthetic.dataset import SynthConfig, generate

__all__ = ["SOURCE_CLASSES", "UTD_CLASSES", "UTD_LABEL_MAP", "ActionClass", "SynthConfig", "generate"]
