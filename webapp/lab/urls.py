"""Researcher URLs: ``lab/...`` (dashboard), ``api/...`` (REST API), ``api/schema/`` (OpenAPI)."""

from django.urls import include, path

from webapp.lab import views

app_name = "lab"

urlpatterns = [
    path("", views.front, name="front"),
    path("lab/", views.index, name="index"),
    path("lab/login/", views.LoginView.as_view(), name="login"),
    path("lab/logout/", views.logout_view, name="logout"),
    path("lab/e/<slug:slug>/", views.experiment_detail, name="experiment"),
    path("lab/e/<slug:slug>/plot/<str:name>.<str:fmt>", views.plot, name="plot"),
    path("lab/e/<slug:slug>/saliency/<int:index>.png", views.saliency, name="saliency"),
    path("lab/e/<slug:slug>/reference/<int:index>.png", views.reference, name="reference"),
    path("lab/e/<slug:slug>/status/", views.set_status, name="status"),
    path("lab/e/<slug:slug>/sampling/", views.set_sampling, name="sampling"),
    path("lab/e/<slug:slug>/export/", views.export, name="export"),
    path("lab/e/<slug:slug>/participants/<int:pk>/erase/", views.erase_participant, name="erase-participant"),
    path("lab/e/<slug:slug>/exports/<uuid:job>.zip", views.export_download, name="export-download"),
    path("lab/e/<slug:slug>/members/", views.set_member, name="members"),
    path("lab/e/<slug:slug>/members/remove/", views.remove_member, name="member-remove"),
    path("api/", include("webapp.lab.api.urls")),
]
