import pytest

from scanbatch.errors import BadRequest, PayloadTooLarge
from scanbatch.images import MAX_IMAGE_BYTES, check_size, detect_mime, sniff_mime
from scanbatch.testing.imaging import image_bytes


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


def test_pixels_are_read_from_the_header_and_bombs_are_refused(tmp_path):
    from scanbatch.images import MAX_IMAGE_PIXELS, check_pixels
    from scanbatch.testing.imaging import png_header

    ok = tmp_path / "ok.png"
    ok.write_bytes(image_bytes("PNG", size=(40, 30)))
    assert check_pixels(ok, "image/png", index=0) == (40, 30)
    heic = tmp_path / "ok.heic"
    heic.write_bytes(image_bytes("HEIF", size=(64, 48)))
    assert check_pixels(heic, "image/heic", index=1) == (64, 48)
    for side in (13000, 30000):  # over our limit; 30000² is also past Pillow's own bomb limit
        bomb = tmp_path / f"{side}.png"
        bomb.write_bytes(png_header(side, side))
        with pytest.raises(BadRequest) as info:
            check_pixels(bomb, "image/png", index=3)
        assert info.value.message.startswith("images[3] is ")
        assert f"{MAX_IMAGE_PIXELS:,} pixels" in info.value.message


def test_an_unreadable_header_is_a_400_naming_the_file(tmp_path):
    from scanbatch.images import check_pixels

    broken = tmp_path / "b.jpg"
    broken.write_bytes(b"\xff\xd8\xff" + b"\0" * 20)
    with pytest.raises(BadRequest, match=r"images\[2\] looks like image/jpeg"):
        check_pixels(broken, "image/jpeg", index=2)
