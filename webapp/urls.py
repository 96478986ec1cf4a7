"""Root URLs: worker pages (crowd), researcher pages and API (lab), admin, login."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.static import serve

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("webapp.crowd.urls")),
    path("", include("webapp.lab.urls")),
    path("", include("webapp.recruit.urls")),
]

if settings.DEBUG:  # researcher-only media (reference files) in development; stimuli go via crowd views
    urlpatterns += [path("media/<path:path>", serve, {"document_root": settings.MEDIA_ROOT})]
