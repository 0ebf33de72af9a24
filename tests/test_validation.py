import json

import pytest

from scanbatch.errors import BadRequest
from scanbatch.validation import parse_manifest


def item(count=1, types=None, **extra):
    return {"imageCount": count, "photoTypes": types or ["front"] * count, **extra}


def error_of(raw, files):
    with pytest.raises(BadRequest) as info:
        parse_manifest(raw, files)
    assert info.value.status == 400
    return info.value.message


def test_accepts_items_object_and_bare_array():
    wrapped = parse_manifest(json.dumps({"items": [item(2, ["front", "back"])]}), 2)
    bare = parse_manifest(json.dumps([item(2, ["front", "back"])]), 2)
    assert wrapped == bare
    assert wrapped.items[0].photo_types == ["front", "back"]
    assert wrapped.total_images == 2


def test_context_is_parsed_with_station_field_names():
    ctx = {"catalogItemId": 42, "stickerText": "RO 5/3", "detectedUPC": "0123", "artistName": "A"}
    manifest = parse_manifest(json.dumps([item(1, context=ctx)]), 1)
    parsed = manifest.items[0].context
    assert parsed.catalog_item_id == 42
    assert parsed.detected_upc == "0123"
    assert parsed.album_title is None


# The eight seed checks, each in the order the station's backend runs them.
@pytest.mark.parametrize(
    ("raw", "files", "message"),
    [
        (json.dumps([item()]), 0, "No images provided"),
        (None, 1, "Missing or invalid manifest field"),
        ("", 1, "Missing or invalid manifest field"),
        ("{not json", 1, "Invalid JSON in manifest field"),
        ("{}", 1, "Manifest must contain a non-empty items array"),
        ("[]", 1, "Manifest must contain a non-empty items array"),
        ('{"items": 3}', 1, "Manifest must contain a non-empty items array"),
        ('"items"', 1, "Manifest must contain a non-empty items array"),
        (json.dumps([item()] * 11), 11, "Batch cannot exceed 10 items"),
        (json.dumps([item(5)] * 10 + []), 51, "Total images cannot exceed 50"),
        (json.dumps([item(5)] * 9 + [item(4, None)] * 1), 51, "Total images cannot exceed 50"),
        (json.dumps([item(6)]), 6, "Each item cannot exceed 5 images"),
        (json.dumps([item(2)]), 3, "Image count mismatch: 3 files uploaded but manifest expects 2"),
    ],
)
def test_seed_checks_have_the_station_messages(raw, files, message):
    assert error_of(raw, files) == message


def test_seed_checks_run_in_order():
    # Both "too many items" and "mismatch" apply: the earlier check wins.
    assert error_of(json.dumps([item()] * 11), 3) == "Batch cannot exceed 10 items"
    # No images beats a broken manifest.
    assert error_of("{broken", 0) == "No images provided"


@pytest.mark.parametrize(
    ("items", "files", "fragment"),
    [
        (
            [{"imageCount": "2", "photoTypes": ["a", "b"]}],
            2,
            "items[0].imageCount must be an integer",
        ),
        ([{"imageCount": 1.5, "photoTypes": ["a"]}], 1, "items[0].imageCount must be an integer"),
        ([{"imageCount": True, "photoTypes": ["a"]}], 1, "items[0].imageCount must be an integer"),
        ([{"imageCount": 0, "photoTypes": []}], 1, "items[0].imageCount must be at least 1"),
        ([{"imageCount": -2, "photoTypes": []}], 1, "items[0].imageCount must be at least 1"),
        ([{"photoTypes": ["a"]}], 1, "items[0].imageCount is required"),
        (["front"], 1, "items[0] must be an object"),
        (
            [item(), {"imageCount": 1, "photoTypes": "front"}],
            2,
            "items[1].photoTypes must be a list",
        ),
        (
            [{"imageCount": 1, "photoTypes": [3]}],
            1,
            "items[0].photoTypes must be a list of non-empty",
        ),
        (
            [{"imageCount": 2, "photoTypes": ["front"]}],
            2,
            "items[0].photoTypes has 1 entries but imageCount is 2",
        ),
        ([item(context="RO 5/3")], 1, "items[0].context must be an object"),
        (
            [item(context={"catalogItemId": "12"})],
            1,
            "items[0].context.catalogItemId must be an integer",
        ),
        ([item(context={"artistName": 5})], 1, "items[0].context.artistName must be a string"),
        ([item(context={"artist": "x"})], 1, "items[0].context has unknown key 'artist'"),
        ([item(colour="red")], 1, "items[0] has unknown key 'colour'"),
    ],
)
def test_every_other_bad_value_names_the_field(items, files, fragment):
    assert fragment in error_of(json.dumps(items), files)


def test_unknown_top_level_key_is_named():
    assert "unknown key 'extra'" in error_of(json.dumps({"items": [item()], "extra": 1}), 1)


def test_null_context_values_are_allowed():
    manifest = parse_manifest(json.dumps([item(context={"artistName": None})]), 1)
    assert manifest.items[0].context.artist_name is None


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 982 + "]" * 982,
        '[{"imageCount": 1, "photoTypes": ["f"], "context": '
        + '{"a": ' * 20000
        + "1"
        + "}" * 20000
        + "}]",
        '[{"imageCount": 1, "photoTypes": ["f"], "context": {"catalogItemId": '
        + "[" * 5000
        + "]" * 5000
        + "}}]",
        "[" * 100_000,
    ],
    ids=["bare-982", "context-20000", "value-5000", "unclosed"],
)
def test_deeply_nested_manifest_is_a_400_naming_the_manifest(raw):
    message = error_of(raw, 1)
    assert message.startswith("Invalid JSON in manifest field")
    assert len(message) < 300


def test_brackets_inside_strings_do_not_count_as_nesting():
    sticker = "[[[[[[[[[[{{{{{{{{{{ \\" + '" ]]]'
    manifest = parse_manifest(json.dumps([item(context={"stickerText": sticker})]), 1)
    assert manifest.items[0].context.sticker_text == sticker


def test_manifest_bytes_must_be_utf8():
    assert "not UTF-8" in error_of(b'[{"imageCount": 1, "photoTypes": ["\xff"]}]', 1)


def test_snake_case_keys_are_not_accepted_in_the_manifest():
    assert "unknown key 'image_count'" in error_of(
        json.dumps([{"imageCount": 1, "photoTypes": ["f"], "image_count": 1}]), 1
    )


def test_long_bad_values_are_shortened_in_messages():
    message = error_of(json.dumps([item(context={"artistName": ["x" * 5000]})]), 1)
    assert "items[0].context.artistName must be a string" in message and len(message) < 200
