"""DPL against the lpips package (same random backbone, shipped lin weights), gradients, weight files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from learning import DPL
from learning.compat import ensure_torchvision
from learning.dpl import weightfile
from learning.errors import LearningError

REAL_ALEX = Path(__file__).resolve().parents[2].parent / "shared/data/backbones/alexnet-imagenet-features.pth"

torch.set_num_threads(2)


def _lpips_twin(dpl: DPL, spatial: bool = False):
    ensure_torchvision()
    import lpips

    lp = lpips.LPIPS(net=dpl.net, pretrained=True, pnet_rand=True, spatial=spatial, verbose=False)
    lp.net.load_state_dict(dpl.backbone.state_dict())  # same random backbone, slice for slice
    return lp


@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_equals_lpips(net: str) -> None:
    dpl = DPL(net, weights="lpips", backbone=None, seed=3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(3, 3, 64, 64, generator=g), torch.rand(3, 3, 64, 64, generator=g)
    lp = _lpips_twin(dpl)
    with torch.no_grad():
        ours, theirs = dpl(x, y), lp(x, y, normalize=True).flatten()
        assert ours.shape == (3,)
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), (ours, theirs)
        lp.spatial = True
        assert torch.allclose(dpl(x, y, spatial=True), lp(x, y, normalize=True), atol=1e-5, rtol=0)
        # linearity used by the fitter
        m = dpl.channel_distances(x, y)
        assert torch.allclose(m @ dpl.flat_weights(), ours, atol=1e-6)
        m0, m1 = dpl.triplet_channel_distances(x, y, torch.flip(y, [0]))
        assert torch.allclose(m0, m, atol=1e-6)


def test_uniform_equals_lpips_baseline() -> None:
    ensure_torchvision()
    import lpips

    dpl = DPL("alex", weights=None, backbone=None, seed=1)
    lp = lpips.LPIPS(net="alex", lpips=False, pnet_rand=True, verbose=False)
    lp.net.load_state_dict(dpl.backbone.state_dict())
    x, y = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(dpl(x, y), lp(x, y, normalize=True).flatten(), atol=1e-5)


def test_gradients_reach_inputs_and_backbone_is_frozen() -> None:
    dpl = DPL("alex", weights="lpips", backbone=None)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    y = torch.rand(2, 3, 64, 64, requires_grad=True)
    dpl(x, y).sum().backward()
    assert x.grad is not None and y.grad is not None
    assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in dpl.backbone.parameters())
    dpl.train()
    assert not dpl.backbone.training
    assert float(dpl(x, x).abs().max()) < 1e-6


def test_seeded_random_backbone_is_reproducible() -> None:
    a, b = DPL("squeeze", backbone=None, seed=5), DPL("squeeze", backbone=None, seed=5)
    assert a.backbone.sha256() == b.backbone.sha256()
    assert a.backbone.sha256() != DPL("squeeze", backbone=None, seed=6).backbone.sha256()


@pytest.mark.parametrize("net,ctor", [("alex", "alexnet"), ("vgg", "vgg16"), ("squeeze", "squeezenet1_1")])
def test_random_backbone_equals_torchvision(net: str, ctor: str) -> None:
    """Our own layer definitions (no torchvision import) draw the very weights torchvision draws."""
    from learning.compat import models
    from learning.dpl.backbones import Backbone

    ours = {k.split(".", 1)[1]: v for k, v in Backbone(net, None, seed=5).state_dict().items()}
    torch.manual_seed(5)
    theirs = getattr(models(), ctor)(weights=None).features.state_dict()
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_backbone_state_dict_file(tmp_path) -> None:
    from learning.compat import models

    torch.manual_seed(11)
    path = tmp_path / "alexnet.pth"
    torch.save(models().alexnet().state_dict(), path)
    a = DPL("alex", backbone=path)
    assert a.backbone.sha256() == DPL("alex", backbone=None, seed=11).backbone.sha256()
    with pytest.raises(LearningError, match="not a torchvision"):
        DPL("vgg", backbone=path)


def test_features_only_backbone_file(tmp_path) -> None:
    """A state dict with only the ``features.*`` keys (as ../shared/data/backbones ships AlexNet) loads
    the same backbone as the whole classifier; another net's file or a partial one is a one-line error."""
    from learning.compat import models

    torch.manual_seed(11)
    whole = models().alexnet().state_dict()
    features = tmp_path / "alex-features.pth"
    torch.save({k: v for k, v in whole.items() if k.startswith("features.")}, features)
    a = DPL("alex", backbone=features)
    assert a.backbone.sha256() == DPL("alex", backbone=None, seed=11).backbone.sha256()
    for net in ("vgg", "squeeze"):
        with pytest.raises(LearningError, match="it holds alex weights") as err:
            DPL(net, backbone=features)
        assert "\n" not in str(err.value)
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in whole.items() if k.startswith("features.0")}, partial)
    with pytest.raises(LearningError, match="features.\\* keys"):
        DPL("alex", backbone=partial)


@pytest.mark.skipif(not REAL_ALEX.is_file(), reason="../shared/data/backbones is not beside the checkout")
def test_real_imagenet_alexnet_file_loads() -> None:
    """The shipped ImageNet AlexNet features (SOURCE.md) load as a backbone and differ from any seeded one."""
    real = DPL("alex", weights="lpips", backbone=REAL_ALEX)
    assert real.backbone.source == f"file:{REAL_ALEX.name}"
    assert real.backbone.sha256() != DPL("alex", backbone=None, seed=0).backbone.sha256()


def test_round_trip_through_lpips_layout(tmp_path) -> None:
    dpl = DPL("squeeze", backbone=None, seed=2)
    g = torch.Generator().manual_seed(1)
    dpl.set_weights([torch.rand(c, generator=g) * (torch.rand(c, generator=g) > 0.3) for c in dpl.channels])
    x, y = torch.rand(4, 3, 64, 64, generator=g), torch.rand(4, 3, 64, 64, generator=g)
    with torch.no_grad():
        before = dpl(x, y)
    path = tmp_path / "w.dpl"
    weightfile.save_weights(dpl, path, metadata={"train_2afc": 0.7})
    sd = weightfile.to_lpips_state_dict(DPL("squeeze", weights=path, backbone=None, seed=2))
    # the LPIPS layout really loads into lpips.LPIPS and gives the same distances
    lp = _lpips_twin(dpl)
    lp.load_state_dict(sd, strict=False)
    with torch.no_grad():
        assert torch.allclose(lp(x, y, normalize=True).flatten(), before, atol=1e-5)
    back = DPL("squeeze", backbone=None, seed=2)
    back.set_weights(weightfile.from_lpips_state_dict(sd, "squeeze"))
    weightfile.save_weights(back, tmp_path / "w2.dpl")
    again = DPL("squeeze", weights=tmp_path / "w2.dpl", backbone=None, seed=2)
    with torch.no_grad():
        assert torch.equal(again(x, y), before)
    meta = weightfile.load_weights(path)["metadata"]
    assert meta["train_2afc"] == 0.7 and len(meta["backbone_sha256"]) == 64 and "torch" in meta["versions"]


def test_wrong_net_weight_file_refused(tmp_path) -> None:
    path = tmp_path / "alex.dpl"
    weightfile.save_weights(DPL("alex", backbone=None), path)
    with pytest.raises(LearningError, match="for net 'alex', not 'vgg'"):
        DPL("vgg", weights=path, backbone=None)
    with pytest.raises(LearningError, match="channels"):
        sd = weightfile.to_lpips_state_dict(DPL("alex", backbone=None))
        weightfile.from_lpips_state_dict(sd, "squeeze")
    (tmp_path / "junk.dpl").write_bytes(b"not a torch file")
    with pytest.raises(LearningError, match="cannot read"):
        DPL("alex", weights=tmp_path / "junk.dpl", backbone=None)


def test_negative_weights_and_bad_args_refused() -> None:
    dpl = DPL("alex", backbone=None)
    with pytest.raises(LearningError, match="nonnegative"):
        dpl.set_weights([-torch.ones(c) for c in dpl.channels])
    with pytest.raises(LearningError, match="unknown net"):
        DPL("resnet", backbone=None)
    with pytest.raises(LearningError, match="N×3×H×W"):
        dpl(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))


def test_parse_backbone_spec(tmp_path) -> None:
    from learning.dpl.backbones import parse_backbone_spec

    state = tmp_path / "alex.pth"
    state.write_bytes(b"x")  # only existence is checked here; Backbone reads it
    assert parse_backbone_spec("imagenet") == ("imagenet", 0)
    assert parse_backbone_spec("random:7") == (None, 7)
    assert parse_backbone_spec(str(state)) == (state, 0)
    with pytest.raises(LearningError, match=r"^backbone 'random:x': random:SEED needs an integer seed$"):
        parse_backbone_spec("random:x")
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(LearningError, match=r"^--backbone '.*nope.pth': not 'imagenet', 'random:SEED'"):
        parse_backbone_spec(missing, "--backbone")


def _plain_tensor_attributes(model: torch.nn.Module) -> list[str]:
    """Tensors a module holds outside its parameters and buffers (``.to()`` would not move them)."""
    return [f"{name}.{attr}" for name, mod in model.named_modules() for attr, value in vars(mod).items()
            if isinstance(value, torch.Tensor)]


def test_to_moves_every_tensor(tmp_path) -> None:
    """``.to("meta")`` and ``.double()`` carry every tensor DPL uses (CI has no GPU to move to): the moved
    model runs on inputs of its device and dtype, a CPU model refuses meta inputs."""
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    cpu = DPL("alex", backbone=None, seed=0)
    assert _plain_tensor_attributes(cpu) == []
    meta = DPL("alex", backbone=None, seed=0).to("meta")
    assert meta.device.type == "meta"
    assert {t.device.type for t in [*meta.parameters(), *meta.buffers()]} == {"meta"}
    assert meta(x.to("meta"), y.to("meta")).device.type == "meta"
    assert meta.channel_distances(x.to("meta"), y.to("meta")).shape == (2, sum(meta.channels))
    with pytest.raises(RuntimeError):
        cpu(x.to("meta"), y.to("meta"))
    double = DPL("alex", backbone=None, seed=0).double()
    assert {t.dtype for t in [*double.parameters(), *double.buffers()]} == {torch.float64}
    with torch.no_grad():
        want, got = cpu(x, y), double(x.double(), y.double())
    assert got.dtype == torch.float64 and torch.allclose(got.float(), want, rtol=1e-5)
    # a tuned backbone loaded into a moved model follows it
    tuned = DPL("alex", backbone=None, seed=1)
    tuned.backbone.tuned = True
    weightfile.save_weights(tuned, tmp_path / "tuned.dpl")
    double.load_weight_source(tmp_path / "tuned.dpl")
    assert {t.dtype for t in double.backbone.parameters()} == {torch.float64}
    want_state = tuned.backbone.state_dict()
    assert all(torch.equal(v.float(), want_state[k]) for k, v in double.backbone.state_dict().items())
