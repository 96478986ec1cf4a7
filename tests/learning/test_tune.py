"""``fit --tune``: end-to-end fine-tuning of backbone, channel weights and head; tuned weight files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from learning import DPL, twoafc
from learning.__main__ import main
from learning.data.bapps import load_2afc
from learning.data.shared import KODAK_PNGS
from learning.dpl import weightfile
from learning.errors import LearningError
from learning.fitting.cache import channel_vectors
from learning.fitting.synthetic import make_dataset
from learning.fitting.tune import TripletImages, evaluate, triplet_distances, tune

KODAK = KODAK_PNGS
NOT_A_BACKBONE = Path("/nonexistent/backbone.pth")  # DPL(backbone=...) raises if it ever reads this


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One ``fit --tune`` run on a small synthetic set (observer on random:1, fitted on random:0)."""
    if not KODAK:
        pytest.skip("Kodak images not found")
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("tune")
    make_dataset(root, KODAK[:8], net="alex", backbone_seed=1, n_train=160, n_val=24, size=64, seed=0)
    out = root / "tuned.dpl"
    # The training set doubles as the selection set: a few CPU seconds of tuning cannot be expected to
    # generalise measurably, but they do lower the training loss, so the kept epoch shows the tuning.
    args = ["fit", "--data", str(root / "train"), "--val", str(root / "train"), "--net", "alex",
            "--backbone", "random:0", "--out", str(out), "--cache", "none", "--patch", "48",
            "--batch-size", "16", "--tune", "--tune-epochs", "3", "--tune-lr", "1e-5", "--quiet"]
    return root, out, args


def test_fit_tune_cli(tuned, capsys) -> None:
    root, out, args = tuned
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "tune: train 2AFC" in printed and "s/epoch" in printed
    data = weightfile.load_weights(out)
    meta = data["metadata"]
    assert meta["tuned"] is True and meta["tune_epochs"] == 3 and meta["tune_lr"] == 1e-5
    base = DPL("alex", backbone=None, seed=0).backbone
    assert meta["base_backbone_source"] == "random:0" and meta["base_backbone_sha256"] == base.sha256()
    # the best epoch is kept, epoch 0 (the linear fit) included: never below it
    assert meta["val_2afc"] >= meta["tune_val_2afc_before"]
    assert abs(meta["tune_val_2afc_before"] - meta["val_2afc_linear"]) < 1e-9  # same crops, same numbers
    assert meta["tune_best_epoch"] >= 1 and meta["val_2afc"] > meta["tune_val_2afc_before"]
    # the file carries a backbone that differs from the random init it started from
    init = base.state_dict()
    state = data["backbone_state"]
    assert set(state) == set(init) and all(state[k].shape == init[k].shape for k in init)
    assert any(not torch.equal(state[k], init[k]) for k in init)
    assert meta["backbone_sha256"] != meta["base_backbone_sha256"]
    assert (torch.cat(data["weights"]) >= 0).all() and data["head"]["c"] >= 0


def test_tuned_file_brings_its_backbone(tuned, tmp_path) -> None:
    root, out, args = tuned
    if not out.exists():
        assert main(args) == 0
    data = weightfile.load_weights(out)
    meta = data["metadata"]
    model = DPL("alex", weights=out, backbone=NOT_A_BACKBONE)  # backbone= is ignored for tuned files
    untuned = DPL("alex", backbone=None, seed=0)
    assert model.backbone.tuned and not untuned.backbone.tuned
    assert model.backbone.sha256() == meta["backbone_sha256"] != untuned.backbone.sha256()
    assert model.backbone.source == "random:0" and model.backbone.base_sha256 == untuned.backbone.sha256()
    # the same distances as the tuned weights put into a model by hand
    manual = DPL("alex", backbone=None, seed=0)
    manual.backbone.load_state_dict(data["backbone_state"])
    manual.set_weights(data["weights"])
    trip = load_2afc(root / "val")[0].triplets
    (ref, p0, p1, h), = TripletImages(trip).load(list(range(len(trip))))
    plain = DPL("alex", backbone=None, seed=0)  # the tuned weights on the untuned backbone
    plain.set_weights(data["weights"])
    with torch.no_grad():
        d = model(ref, p0)
        assert torch.allclose(d, manual(ref, p0), rtol=1e-6, atol=0)
        assert (d - plain(ref, p0)).abs().max() > 1e-4 * d.abs().max()
    # what the tune module reported (the selection set is the training set, cropped at --patch 48)
    selection = TripletImages(load_2afc(root / "train")[0].triplets, patch=48, seed=0)
    assert evaluate(model, selection, 16) == pytest.approx(meta["val_2afc"], abs=1e-12)
    # and so does the score command through the dpl:FILE metric (same crops at --patch 48, seed 0)
    report = tmp_path / "score.json"
    assert main(["score", "--data", str(root / "train"), "--metrics", f"dpl:{out}", "--patch", "48",
                 "--bootstrap", "10", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["results"][0]["score"] == pytest.approx(meta["val_2afc"], abs=1e-9)
    # the feature cache keys on the tuned backbone: tuned and untuned vectors never share a folder
    channel_vectors(model, trip[:4], tmp_path / "cache", progress=False)
    channel_vectors(untuned, trip[:4], tmp_path / "cache", progress=False)
    assert len(list((tmp_path / "cache").iterdir())) == 2
    # LPIPS's lin layout cannot hold the backbone: refused
    with pytest.raises(LearningError, match="tuned backbone"):
        weightfile.to_lpips_state_dict(model)


def test_tune_in_memory_equals_reloaded_file(tmp_path) -> None:
    """tune() leaves the model holding the kept epoch; the file written from it reproduces it exactly."""
    if not KODAK:
        pytest.skip("Kodak images not found")
    torch.set_num_threads(2)
    make_dataset(tmp_path, KODAK[:4], backbone_seed=1, n_train=24, n_val=12, size=48, seed=2)
    train, val = (load_2afc(tmp_path / s)[0].triplets for s in ("train", "val"))
    model = DPL("alex", backbone=None, seed=0)
    res = tune(model, 0.5, train, val, epochs=2, lr=1e-4, batch_size=8, progress=False)
    assert res.val_2afc >= res.val_2afc_before and res.epochs_run >= 1 and len(res.epoch_seconds) >= 1
    assert model.backbone.tuned and all(not p.requires_grad for p in model.backbone.parameters())
    path = tmp_path / "t.dpl"
    weightfile.save_weights(model, path, head={"c": res.head_c})
    again = DPL("alex", weights=path, backbone=None, seed=7)
    assert again.backbone.sha256() == model.backbone.sha256()
    (ref, p0, p1, h), = TripletImages(val).load(list(range(len(val))))
    with torch.no_grad():
        assert torch.equal(again(ref, p0), model(ref, p0))
        d0, d1 = triplet_distances(again, ref, p0, p1)
    assert twoafc.score(d0.numpy(), d1.numpy(), h.numpy()) == res.val_2afc
    for bad in ({"epochs": 0}, {"epochs": -1}, {"lr": 0.0}, {"lr": -1e-5}, {"lr": float("nan")}):
        with pytest.raises(LearningError):
            tune(model, 0.5, train, val, **{"epochs": 1, "lr": 1e-5, **bad})


def test_untuned_file_loads_as_before(tmp_path) -> None:
    dpl = DPL("alex", backbone=None, seed=3)
    g = torch.Generator().manual_seed(0)
    dpl.set_weights([torch.rand(c, generator=g) for c in dpl.channels])
    path = tmp_path / "plain.dpl"
    weightfile.save_weights(dpl, path, metadata={"val_2afc": 0.7})
    data = weightfile.load_weights(path)
    assert "backbone_state" not in data and "tuned" not in data["metadata"]
    again = DPL("alex", weights=path, backbone=None, seed=3)
    assert not again.backbone.tuned and again.backbone.sha256() == dpl.backbone.sha256()
    x, y = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    with torch.no_grad():
        assert torch.equal(again(x, y), dpl(x, y))
    assert set(weightfile.to_lpips_state_dict(again)) == {f"lin{i}.model.1.weight" for i in range(5)}
    # an untuned file still needs its backbone argument, as before
    with pytest.raises(LearningError, match="backbone file not found"):
        DPL("alex", weights=path, backbone=NOT_A_BACKBONE)


def test_bad_backbone_state_refused(tmp_path) -> None:
    dpl = DPL("alex", backbone=None, seed=0)
    dpl.backbone.tuned = True
    path = tmp_path / "t.dpl"
    weightfile.save_weights(dpl, path)
    data = torch.load(path, weights_only=True)
    data["backbone_state"].pop("slice1.0.bias")
    torch.save(data, tmp_path / "broken.dpl")
    with pytest.raises(LearningError, match="not a alex backbone state dict"):
        DPL("alex", weights=tmp_path / "broken.dpl", backbone=None)


@pytest.mark.parametrize("extra,message", [
    (["--tune", "--tune-epochs", "0"], "--tune-epochs 0: must be a positive integer"),
    (["--tune", "--tune-epochs=-2"], "--tune-epochs -2: must be a positive integer"),
    (["--tune", "--tune-lr", "0"], "--tune-lr 0.0: must be a positive number"),
    (["--tune", "--tune-lr=-1e-5"], "--tune-lr -1e-05: must be a positive number"),
    (["--tune", "--tune-lr", "nan"], "--tune-lr nan: must be a positive number"),
    (["--tune-epochs", "2"], "--tune-epochs and --tune-lr need --tune"),
])
def test_bad_tune_args(tmp_path, capsys, extra, message) -> None:
    out = tmp_path / "w.dpl"
    rc = main(["fit", "--data", str(tmp_path), "--out", str(out), "--backbone", "random:0", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and err == f"error: {message}\n"
    assert not out.exists()


def test_tuned_file_loads_where_a_dpl_file_is_named(tuned, tmp_path) -> None:
    """train-codec's ``dpl:FILE`` loss and the ``dpl:FILE`` metric both take the file's own backbone, even
    when the base it was tuned from is a local file that is no longer around."""
    from learning.metrics.registry import get_metric
    from learning.training.losses import load_dpl

    root, out, args = tuned
    if not out.exists():
        assert main(args) == 0
    blob = torch.load(out, weights_only=True)
    blob["metadata"]["backbone_source"] = blob["metadata"]["base_backbone_source"] = "file:gone.pth"
    moved = tmp_path / "moved.dpl"
    torch.save(blob, moved)
    reference = DPL("alex", weights=out, backbone=NOT_A_BACKBONE)
    x, y = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        want = reference(x, y)
        assert torch.equal(load_dpl(str(moved))(x, y), want)
        assert torch.allclose(get_metric(f"dpl:{moved}")(x, y), want, rtol=1e-6, atol=0)
    # an untuned file fitted on a local backbone file still asks for it, in each caller's words
    plain = weightfile.load_weights(out)
    untuned = tmp_path / "untuned.dpl"
    model = DPL("alex", backbone=None, seed=0)
    model.set_weights(plain["weights"])
    weightfile.save_weights(model, untuned)
    blob = torch.load(untuned, weights_only=True)
    blob["metadata"]["backbone_source"] = "file:gone.pth"
    torch.save(blob, untuned)
    with pytest.raises(LearningError, match="--dpl-backbone"):
        load_dpl(str(untuned))
    with pytest.raises(LearningError, match="name it: dpl:"):
        get_metric(f"dpl:{untuned}")
