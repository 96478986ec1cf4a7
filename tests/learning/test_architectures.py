"""Learned-codec architectures come from CompressAI's registry, with our sizes; unknown names are refused."""

from __future__ import annotations

import pytest

from learning import compat
from learning.architectures import ARCHS, DEFAULT_M, DEFAULT_N, build_model, get_architecture
from learning.errors import LearningError


def test_each_architecture_is_compressai_s_class_with_our_sizes():
    compat.ensure_torchvision()
    from compressai.zoo.image import model_architectures  # after the torchvision shim above

    assert ARCHS == ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor")
    assert (DEFAULT_N, DEFAULT_M) == (128, 192)
    for arch in ARCHS:
        model = build_model(arch, 16, 24)
        assert type(model) is model_architectures[arch]
    # cheng2020-anchor has no M: its latent has N channels
    assert get_architecture("cheng2020-anchor").sizes(16, 24) == (16, 16)
    assert get_architecture("mbt2018-mean").sizes(16, 24) == (16, 24)


def test_unknown_architecture_names_the_known_ones():
    with pytest.raises(LearningError, match=r"unknown architecture 'nope'; known: bmshj2018-factorized, "):
        build_model("nope", 16, 16)
