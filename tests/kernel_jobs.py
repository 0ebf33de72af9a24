"""A job folder to run in-process, as the processing kernel gets it (tests of scanbatch.kernel
and scanbatch.kernel_job)."""

from scanbatch.jobfolder import JobFolder
from scanbatch.models import Manifest
from scanbatch.testing.imaging import image_bytes


def make_job(tmp_path, records):
    items = [
        {
            "imageCount": 2,
            "photoTypes": ["front", "back"],
            "context": {"artistName": artist, "albumTitle": title, "stickerText": script},
        }
        for artist, title, script in records
    ]
    folder = JobFolder.for_job(tmp_path / "jobs", "job-1")
    folder.create(Manifest.model_validate({"items": items}))
    for i in range(len(items)):
        folder.write_image(i, 0, image_bytes("JPEG"))
        folder.write_image(i, 1, image_bytes("HEIF"))
    return folder
