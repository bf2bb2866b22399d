"""
Constants of RunComfy's documented Model API contract, shared by the provider and the emulator.

Pure data with no imports, so the emulator (standard library and Pillow only, any Airflow version)
and the provider's input checks read the same documented values instead of two copies that could
drift apart.
"""

from __future__ import annotations

EDIT_MODEL_ID = "bytedance/dreamina-4-0/edit"
VIDEO_MODEL_ID = "bytedance/dreamina-3-0/pro/image-to-video"

#: The edit model's output size field: its key holds the multiplication sign (U+00D7), not an ``x``.
SIZE_FIELD = "width\u00d7height"

#: The output sizes Dreamina 4.0 edit documents, spelled exactly as the API expects them.
EDIT_SIZES: tuple[str, ...] = (
    "1024x1024(1:1)",
    "2048x2048(1:1)",
    "2304x1728(4:3)",
    "2496x1664(3:2)",
    "2560x1440(16:9)",
    "3024x1296(21:9)",
    "4096x4096(1:1)",
    "4694x3520(4:3)",
    "4992x3328(3:2)",
    "5404x3040(16:9)",
    "6198x2656(21:9)",
)

#: The longest prompt either model accepts, in characters.
MAX_PROMPT_CHARS = 800
