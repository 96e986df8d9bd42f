"""Offline teacher stage: RGB video -> CLIP visual features and multimodal-LLM instructive text -> feature cache."""
