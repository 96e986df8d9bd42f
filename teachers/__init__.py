"""Offline teacher stage: RGB video -> CLIP visual features and multimodal-LLM instructive text -> feature cache.

Run once per dataset and teacher configuration with ``mmcl precompute`` (:mod:`teachers.precompute`); training
reads the result with :func:`teachers.cache.open_cache`. Modules:

- :mod:`teachers.config`: the ``TeacherConfig`` schema of ``configs/teachers/*.yaml`` (loaded by :mod:`mmcl.config`).
- :mod:`teachers.video`: decoding (decord or PyAV), uniform frame sampling, the skeleton person crop, canvases.
- :mod:`teachers.inputs`: one sample's video -> CLIP pixels and the LLM canvas (a data-loader dataset).
- :mod:`teachers.clip`, :mod:`teachers.llm`, :mod:`teachers.text`: the CLIP, vision-language and text-encoder models.
- :mod:`teachers.cache`: the cache key, the chunked on-disk format, its writer and reader.
- :mod:`teachers.tiny`: tiny random teachers that run offline, for tests and the demo.
"""
