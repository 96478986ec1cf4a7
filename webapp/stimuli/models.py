"""Reference images (content-addressed) and stimuli (one decoded distortion each, opaque public id)."""

from __future__ import annotations

import uuid

from django.db import models


def reference_path(instance: ReferenceImage, filename: str) -> str:
    return f"refs/{instance.sha256}.png"


def saliency_path(instance: ReferenceImage, filename: str) -> str:
    return f"saliency/{instance.sha256}.png"


def stimulus_path(instance: Stimulus, filename: str) -> str:
    return f"stimuli/{instance.public_id}.png"


class ReferenceImage(models.Model):
    SPLITS = [("train", "train"), ("val", "val"), ("test", "test")]

    sha256 = models.CharField(max_length=64, unique=True)
    file = models.FileField(upload_to=reference_path)
    original_name = models.CharField(max_length=255)
    source = models.CharField(max_length=255, blank=True)
    licence = models.CharField(max_length=255, blank=True)
    split = models.CharField(max_length=8, choices=SPLITS, default="train")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    # 16-bit grayscale PNG at the reference's size (learning.saliency format) and the model that made it
    saliency = models.FileField(upload_to=saliency_path, blank=True)
    saliency_model = models.CharField(max_length=100, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.sha256[:10]})"


class Stimulus(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    reference = models.ForeignKey(ReferenceImage, on_delete=models.CASCADE, related_name="stimuli")
    codec = models.CharField(max_length=100)  # "original" = the lossless reference itself
    codec_version = models.CharField(max_length=100, blank=True)
    params = models.JSONField(default=dict, blank=True)
    setting_key = models.CharField(max_length=255)  # codec + canonical params: one stimulus per setting
    quality = models.FloatField(null=True, blank=True)
    target_bpp = models.FloatField(null=True, blank=True)
    bpp = models.FloatField()
    encoded = models.BinaryField(blank=True)
    encoded_sha256 = models.CharField(max_length=64, blank=True)
    decoded = models.FileField(upload_to=stimulus_path)
    psnr = models.FloatField(null=True, blank=True)
    ssim = models.FloatField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        unique_together = [("reference", "codec", "setting_key")]

    @property
    def is_original(self) -> bool:
        return self.codec == "original"

    def __str__(self) -> str:
        return f"{self.codec} {self.setting_key} of ref {self.reference_id}"
