import pytest

from scanbatch.errors import BadRequest, PayloadTooLarge
from scanbatch.images import MAX_IMAGE_BYTES, check_size, detect_mime, sniff_mime
from tests.imaging import image_bytes


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp"), ("HEIF", "image/heic")],
)
def test_type_comes_from_the_bytes(fmt, mime):
    assert detect_mime(image_bytes(fmt)[:32]) == mime


def test_heif_brand_mif1_is_heif():
    head = b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic"
    assert detect_mime(head) == "image/heif"


def test_compatible_brand_decides_when_major_is_unknown():
    head = b"\x00\x00\x00\x1cftypabcd\x00\x00\x00\x00abcdheix"
    assert detect_mime(head) == "image/heic"


@pytest.mark.parametrize("data", [b"GIF89a....", b"%PDF-1.7", b"", b"\x00\x00\x00\x18ftypisom"])
def test_non_images_are_refused_with_their_index(data):
    with pytest.raises(BadRequest, match=r"images\[3\] is not a supported image"):
        sniff_mime(data, index=3)


def test_size_limit_names_the_file():
    check_size(MAX_IMAGE_BYTES, index=0)
    with pytest.raises(PayloadTooLarge, match=r"images\[2\].*10 MiB") as info:
        check_size(MAX_IMAGE_BYTES + 1, index=2)
    assert info.value.status == 413
