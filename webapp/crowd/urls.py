"""Worker URLs: ``/p/<slug>/`` entry, ``/a/<token>/...`` the assignment (page, JSON API, images)."""

from django.urls import path

from webapp.crowd import views

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
]
