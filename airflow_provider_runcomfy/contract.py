"""
Kept importable: the documented models' constants moved to :mod:`airflow_provider_runcomfy.documented`.
"""

from __future__ import annotations

from airflow_provider_runcomfy.documented import (
    EDIT_MODEL_ID,
    EDIT_SIZES,
    MAX_PROMPT_CHARS,
    SIZE_FIELD,
    VIDEO_MODEL_ID,
)

__all__ = ["EDIT_MODEL_ID", "EDIT_SIZES", "MAX_PROMPT_CHARS", "SIZE_FIELD", "VIDEO_MODEL_ID"]
