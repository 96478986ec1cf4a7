"""REST API under ``api/`` and its OpenAPI schema at ``api/schema/`` (YAML; ``?format=json`` for JSON)."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from webapp.lab.api import views

data_patterns = [
    path("experiments/", views.ExperimentList.as_view(), name="api-experiments"),
    path("experiments/<slug:slug>/", views.ExperimentDetail.as_view(), name="api-experiment"),
    path("experiments/<slug:slug>/judgments/", views.JudgmentList.as_view(), name="api-judgments"),
    path("experiments/<slug:slug>/qc/", views.ParticipantQC.as_view(), name="api-qc"),
    path("experiments/<slug:slug>/export/", views.ExportJobs.as_view(), name="api-export"),
    path("experiments/<slug:slug>/participants/erase/", views.ParticipantErasureByPlatformId.as_view(),
         name="api-erase-by-platform-id"),
    path("experiments/<slug:slug>/participants/<str:participant>/", views.ParticipantErasure.as_view(),
         name="api-participant"),
]

urlpatterns = data_patterns + [
    path("schema/", SpectacularAPIView.as_view(urlconf="webapp.lab.api.schema_urls"), name="api-schema"),
]
