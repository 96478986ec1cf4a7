from django.contrib import admin

from webapp.stimuli.models import ReferenceImage, Stimulus


@admin.register(ReferenceImage)
class ReferenceImageAdmin(admin.ModelAdmin):
    list_display = ("id", "original_name", "split", "width", "height", "source", "sha256")
    list_filter = ("split", "source")
    search_fields = ("original_name", "sha256")


@admin.register(Stimulus)
class StimulusAdmin(admin.ModelAdmin):
    list_display = ("public_id", "reference", "codec", "setting_key", "bpp", "psnr", "ssim")
    list_filter = ("codec",)
    exclude = ("encoded",)
    readonly_fields = ("public_id", "encoded_sha256")
