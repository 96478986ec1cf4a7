"""Admin for references and stimuli: look and fix labels, never upload.

Files only enter through ``import_images`` / ``make_stimuli`` / ``import_saliency``, which decode and check
every image (bombs, truncation, colour profiles) and content-address it; an admin upload would bypass that.
"""

from django.contrib import admin

from webapp.stimuli.models import ReferenceImage, Stimulus


class NoUploadAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False


@admin.register(ReferenceImage)
class ReferenceImageAdmin(NoUploadAdmin):
    list_display = ("id", "original_name", "split", "width", "height", "source", "sha256")
    list_filter = ("split", "source")
    search_fields = ("original_name", "sha256")
    readonly_fields = ("sha256", "file", "width", "height", "saliency", "saliency_model")


@admin.register(Stimulus)
class StimulusAdmin(NoUploadAdmin):
    list_display = ("public_id", "reference", "codec", "setting_key", "bpp", "psnr", "ssim")
    list_filter = ("codec",)
    exclude = ("encoded",)
    readonly_fields = ("public_id", "encoded_sha256", "decoded", "reference", "codec", "codec_version",
                       "setting_key", "bpp")
