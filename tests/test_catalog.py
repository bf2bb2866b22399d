"""
The model catalog: the hook's read-only catalog calls against the emulator, their per-process cache,
and the typed entries (``ModelInfo``) and shipped schema files they are read into.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_provider_runcomfy.catalog import (
    CATALOG_CACHE,
    CatalogCache,
    ModelInfo,
    PriceUnit,
    bundled_model,
    bundled_model_ids,
    parse_price_unit,
)
from airflow_provider_runcomfy.emulator import DEMO_IMAGE_MODEL, DEMO_VIDEO_MODEL
from airflow_provider_runcomfy.exceptions import RunComfyUnavailableError, RunComfyUnknownModelError
from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook
from tests.conftest import TEST_TOKEN

EDIT = "bytedance/dreamina-4-0/edit"
VIDEO = "bytedance/dreamina-3-0/pro/image-to-video"


def catalog_gets(emu: Any) -> list[Any]:
    return [r for r in emu.requests if r.method == "GET" and r.path.startswith("/v1/models")]


def test_get_model_reads_price_and_schema(emu: Any) -> None:
    info = RunComfyHook().get_model(DEMO_IMAGE_MODEL)
    assert info.model_id == DEMO_IMAGE_MODEL
    assert info.display_name == "Emulator demo image model"
    assert info.categories == ("image-to-image",)
    assert info.base_price_usd == pytest.approx(0.02)
    assert info.price_unit is PriceUnit.OUTPUT
    assert info.price_unit.is_per_output
    assert info.describe_price() == "$0.02/output"
    assert info.input_schema is not None
    assert "image_urls" in info.input_schema["properties"]
    video = RunComfyHook().get_model(f"/{DEMO_VIDEO_MODEL}/")
    assert video.price_unit is PriceUnit.SECOND
    assert video.price_unit.is_per_second
    assert [r.path for r in catalog_gets(emu)] == [
        f"/v1/models/{DEMO_IMAGE_MODEL}",
        f"/v1/models/{DEMO_VIDEO_MODEL}",
    ]
    assert all(r.authorized for r in catalog_gets(emu))


def test_answers_are_cached_per_process_until_cleared(emu: Any) -> None:
    first = RunComfyHook().get_model(EDIT)
    again = RunComfyHook().get_model(EDIT)  # another hook, same process and connection
    assert again is first
    assert len(catalog_gets(emu)) == 1
    CATALOG_CACHE.clear()
    RunComfyHook().get_model(EDIT)
    assert len(catalog_gets(emu)) == 2


def test_list_models_and_categories(emu: Any) -> None:
    hook = RunComfyHook()
    page = hook.list_models(category="image-to-video", include_schema=True, limit=10, offset=0)
    assert {m.model_id for m in page.models} == {VIDEO, DEMO_VIDEO_MODEL}
    assert page.total == 2
    assert all(m.input_schema for m in page.models)
    bare = hook.list_models(search="dreamina", limit=1)
    assert len(bare.models) == 1
    assert bare.total == 2
    assert bare.models[0].input_schema is None
    assert hook.list_categories() == ["image-to-image", "image-to-video"]
    queries = [r.query for r in catalog_gets(emu) if r.path == "/v1/models"]
    assert queries[0] == {
        "category": "image-to-video",
        "include_schema": "true",
        "limit": "10",
        "offset": "0",
    }
    assert queries[1] == {"search": "dreamina", "limit": "1", "offset": "0"}


def test_async_twins_give_the_same_answers(emu: Any) -> None:
    async def read() -> tuple[ModelInfo, Any, list[str]]:
        hook = RunComfyHook()
        try:
            return (
                await hook.aget_model(DEMO_IMAGE_MODEL),
                await hook.alist_models(search="demo"),
                await hook.alist_categories(),
            )
        finally:
            await hook.aclose()

    info, page, categories = asyncio.run(read())
    assert info.price_unit is PriceUnit.OUTPUT
    assert {m.model_id for m in page.models} == {DEMO_IMAGE_MODEL, DEMO_VIDEO_MODEL}
    assert categories == ["image-to-image", "image-to-video"]
    CATALOG_CACHE.clear()
    assert asyncio.run(read())[0] == RunComfyHook().get_model(DEMO_IMAGE_MODEL)


def test_an_unknown_model_and_an_unreachable_catalog(emu: Any) -> None:
    with pytest.raises(RunComfyUnknownModelError):
        RunComfyHook().get_model("nobody/nothing")
    emu.catalog_available = False
    with pytest.raises(RunComfyUnavailableError) as err:
        RunComfyHook().get_model(EDIT)
    assert TEST_TOKEN not in str(err.value)
    assert len([r for r in catalog_gets(emu) if r.status == 503]) > 1, "free reads are retried"
    emu.catalog_available = True
    assert RunComfyHook().get_model(EDIT).model_id == EDIT, "a failure is never cached"


# -- typed entries, offline -------------------------------------------------------------------------


def test_model_info_keeps_only_well_formed_fields() -> None:
    info = ModelInfo.from_api(
        {
            "model_id": "a/b",
            "categories": "image-to-image",
            "base_price_usd": "0.1",
            "price_unit": "token",
            "input_schema": [],
            "display_name": 7,
        }
    )
    assert info == ModelInfo(model_id="a/b", categories=("image-to-image",))
    assert not info.has_price
    assert info.describe_price() == "no price"
    assert info.label == "a/b"
    assert ModelInfo.from_api({"base_price_usd": True}, model_id="x/y").base_price_usd is None
    with pytest.raises(ValueError, match="no model_id"):
        ModelInfo.from_api({})
    assert parse_price_unit("second") is PriceUnit.SECOND
    assert parse_price_unit("minute") is None


def test_cache_bounds_and_zero_ttl() -> None:
    cache = CatalogCache(ttl=60, max_entries=2)
    for key in ("a", "b", "c"):
        cache.put((key,), key)
    assert len(cache) == 2
    assert cache.get(("a",)) is None, "the oldest went first"
    assert cache.get(("c",)) == "c"
    off = CatalogCache(ttl=0)
    off.put(("a",), 1)
    assert off.get(("a",)) is None


def test_cache_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow_provider_runcomfy.catalog as catalog

    now = [1000.0]
    monkeypatch.setattr(catalog.time, "monotonic", lambda: now[0])
    cache = CatalogCache(ttl=10)
    cache.put(("k",), "v")
    now[0] += 9.9
    assert cache.get(("k",)) == "v"
    now[0] += 0.2
    assert cache.get(("k",)) is None


def test_the_documented_models_ship_their_schemas() -> None:
    assert set(bundled_model_ids()) == {EDIT, VIDEO}
    edit = bundled_model(EDIT)
    assert edit is not None
    assert edit.input_schema is not None
    assert edit.input_schema["required"] == ["image_urls", "prompt"]
    assert not edit.has_price, "RunComfy documents no price: none is made up"
    assert bundled_model("someone/else") is None
