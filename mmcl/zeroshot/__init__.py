"""Zero-shot and domain-adaptive evaluation on UTD-MHAD and SYSU-Action (MMCL's generalisation claim).

A model trained on the source dataset (NTU RGB+D 120, or the synthetic set) is frozen and applied to a target dataset
recorded with another sensor (Kinect v1, 20 joints):

- :mod:`.protocol`: the published protocol (joint mapping with the documented fill rule, an all-zero second person,
  centring, centre crop 0.95 resized to the window) and the mapped top-1 / top-5;
- :mod:`.labelmap`: label mapping files (``configs/zeroshot/*.yaml``), target class -> source class;
- :mod:`.refine`: the "w/ refine" rows: the run's FRM with the target clips' teacher text;
- :mod:`.openvocab`: open-vocabulary scoring of every target class through the run's text-space projection;
- :mod:`.teacher`, :mod:`.heads`: the target teacher cache and the run's heads file, checked to belong to the source
  run (the heads are loaded by name, :func:`mmcl.colearn.heads.load_head`);
- :mod:`.targets`: the target datasets, prepared or raw; :mod:`.report`: outputs; :mod:`.evaluate`:
  :func:`zeroshot`, all of it in one call; :mod:`.cli`: ``mmcl zeroshot``.

Domain-adaptive evaluation needs no code of its own: ``configs/finetune/*.yaml`` fine-tune from a source checkpoint
(``model.init``) on the target's training split through the same joint mapping (``data.layout`` / ``num_person`` /
``center``), and ``mmcl train`` evaluates on its test split.
"""

from mmcl.zeroshot.evaluate import default_mapping, zeroshot
from mmcl.zeroshot.labelmap import LabelMapping, LabelMappingError, load_label_mapping

__all__ = ["LabelMapping", "LabelMappingError", "default_mapping", "load_label_mapping", "zeroshot"]
