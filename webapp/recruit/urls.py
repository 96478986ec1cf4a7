"""Recruiting pages under the study's lab URL."""

from django.urls import path

from webapp.recruit import views

app_name = "recruit"

urlpatterns = [
    path("lab/e/<slug:slug>/recruit/", views.page, name="page"),
    path("lab/e/<slug:slug>/recruit/<str:action>/", views.act, name="act"),
]
