"""Saliency maps on the site: attached from `learning saliency` or computed, shown on the dashboard."""

import io
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from learning.__main__ import main as learning_main
from learning.saliency import load_map
from webapp.stimuli.models import ReferenceImage


def _write_refs(world, folder: Path) -> Path:
    folder.mkdir()
    for ref in world.refs:
        with ref.file.open("rb") as fh:
            (folder / ref.original_name).write_bytes(fh.read())
    return folder


def _stored() -> list[tuple[str, str]]:
    return list(ReferenceImage.objects.order_by("id").values_list("saliency", "saliency_model"))


def test_maps_from_learning_cli_are_attached_and_shown(world, client, users, tmp_path):
    images = _write_refs(world, tmp_path / "images")
    maps = tmp_path / "maps"
    assert learning_main(["saliency", "--images", str(images), "--out", str(maps)]) == 0
    call_command("import_saliency", str(maps), model="spectral", stdout=io.StringIO())
    for ref in world.refs:
        ref.refresh_from_db()
        assert ref.saliency_model == "spectral"
        with ref.saliency.open("rb") as fh:
            stored = load_map(io.BytesIO(fh.read()))
        assert stored.shape == (ref.height, ref.width)
        assert np.allclose(stored, load_map(maps / ref.original_name), atol=1 / 65535)

    url = f"/lab/e/{world.exp.slug}/saliency/0.png"
    assert client.get(url).status_code == 302  # anonymous: to the login page
    client.force_login(users["bob"])  # not the owner: the experiment does not exist for him
    assert client.get(url).status_code == 404
    client.force_login(users["alice"])
    page = client.get(f"/lab/e/{world.exp.slug}/").content.decode()
    assert url in page and f"/lab/e/{world.exp.slug}/saliency/1.png" in page
    r = client.get(url)
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    thumb = Image.open(io.BytesIO(r.content))
    assert thumb.size == (world.refs[0].width, world.refs[0].height) and thumb.mode == "RGB"
    assert client.get(f"/lab/e/{world.exp.slug}/saliency/2.png").status_code == 404


@pytest.mark.parametrize("case", ["unmatched", "corrupt", "empty", "too-big"])
def test_bad_map_folder_stores_nothing(world, media, tmp_path, case, settings):
    maps = tmp_path / "maps"
    maps.mkdir()
    good = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    Image.fromarray((good * 65535).astype(np.uint16)).save(maps / "ref0.png")
    if case == "unmatched":
        Image.fromarray((good * 65535).astype(np.uint16)).save(maps / "kodim99.png")
        message = "kodim99.png: matches no reference image"
    elif case == "corrupt":
        (maps / "ref1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        message = "unreadable saliency map"
    elif case == "too-big":  # the byte cap of import_images applies to maps too, before any decoding
        settings.STIMULI_MAX_IMAGE_BYTES = (maps / "ref0.png").stat().st_size - 1
        message = r"ref0.png: file is [\d,]+ bytes, over the [\d,]+-byte limit \(STIMULI_MAX_IMAGE_BYTES\)"
    else:
        (maps / "ref0.png").unlink()
        message = "no .png saliency maps"
    before = _stored()
    with pytest.raises(CommandError, match=message):
        call_command("import_saliency", str(maps))
    assert _stored() == before == [("", ""), ("", "")]
    assert not (media / "saliency").exists()


def test_compute_maps_and_arguments(world, media):
    with pytest.raises(CommandError, match="either a DIR"):
        call_command("import_saliency")
    call_command("import_saliency", compute="spectral", stdout=io.StringIO())
    assert [m for _, m in _stored()] == ["spectral", "spectral"]
    out = io.StringIO()
    call_command("import_saliency", compute="spectral", missing_only=True, stdout=out)
    assert "for 0 reference image(s)" in out.getvalue()
    call_command("import_saliency", compute="spectral", stdout=io.StringIO())
    assert len(list((media / "saliency").iterdir())) == 2  # replaced, never piled up


def test_reference_thumbnails_and_the_scale_interval_on_the_study_page(world, client, users):
    """Every reference has a thumbnail on the study page (with or without a saliency map), behind the same
    access rule; the scale says which interval it shows, and each figure is drawn on the page."""
    url = f"/lab/e/{world.exp.slug}/reference/0.png"
    assert client.get(url).status_code == 302
    client.force_login(users["bob"])
    assert client.get(url).status_code == 404
    client.force_login(users["alice"])
    r = client.get(url)
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    with world.refs[0].file.open("rb") as fh:
        original = Image.open(fh).convert("RGB")
    thumb = Image.open(io.BytesIO(r.content))
    assert thumb.size == original.size and np.array_equal(np.asarray(thumb), np.asarray(original))
    assert client.get(f"/lab/e/{world.exp.slug}/reference/{len(world.refs)}.png").status_code == 404
    assert client.get(f"/lab/e/{world.exp.slug}/reference/{2**70}.png").status_code == 404
    page = client.get(f"/lab/e/{world.exp.slug}/").content.decode()
    for i in range(len(world.refs)):
        assert f'src="/lab/e/{world.exp.slug}/reference/{i}.png"' in page
    assert "no saliency map" in page  # none attached here: the thumbnail alone
    assert "95 % posterior interval" in page and "bootstrap" not in page
    for name in ("timeline", "coverage", "qc", "winrate", "scale", "agreement"):
        assert f'<figure id="plot-{name}"><img src="/lab/e/{world.exp.slug}/plot/{name}.png"' in page
