"""Worker URLs: ``/p/<slug>/`` entry, ``/a/<token>/...`` the assignment (page, JSON API, images), the
JavaScript catalog of each language; and the researcher's preview of a study, ``/lab/e/<slug>/preview/...``
(login required, stores nothing)."""

from django.urls import path

from webapp.crowd import preview, views

app_name = "crowd"

urlpatterns = [
    path("p/<slug:slug>/", views.entry, name="entry"),
    path("p/<slug:slug>/withdrawn/", views.withdrawn, name="withdrawn"),
    path("a/<uuid:token>/", views.task, name="task"),
    path("a/<uuid:token>/state", views.state, name="state"),
    path("a/<uuid:token>/judge", views.judge, name="judge"),
    path("a/<uuid:token>/device", views.device, name="device"),
    path("a/<uuid:token>/complete", views.complete, name="complete"),
    path("a/<uuid:token>/done", views.done, name="done"),
    path("a/<uuid:token>/withdraw", views.withdraw, name="withdraw"),
    path("a/<uuid:token>/img/<int:position>/<str:side>", views.image, name="image"),
    path("i18n/<str:lang>.js", views.js_catalog, name="jsi18n"),
    path("lab/e/<slug:slug>/preview/", preview.entry, name="preview"),
    path("lab/e/<slug:slug>/preview/task/", preview.task, name="preview-task"),
    path("lab/e/<slug:slug>/preview/done/", preview.done, name="preview-done"),
    path("lab/e/<slug:slug>/preview/withdrawn/", preview.withdrawn, name="preview-withdrawn"),
    path("lab/e/<slug:slug>/preview/<int:seed>/img/<int:position>/<str:side>", preview.image,
         name="preview-image"),
]
