"""URL patterns of the lab endpoints, named so that views can ``reverse()`` them."""

from django.urls import path

from . import items, views, waits

urlpatterns = [
    path("", views.hello, name="hello"),
    path("environ", views.show_environ, name="environ"),
    path("stream", views.stream, name="stream"),
    path("download", views.download, name="download"),
    path("upload", views.upload, name="upload"),
    path("slow", views.slow, name="slow"),
    path("redirect", views.redirect_home, name="redirect"),
    path("error", views.error, name="error"),
    path("items", items.items, name="items"),
    path("items/<int:item_id>", items.item, name="item"),
    path("query", items.sleep_query, name="query"),
    path("wait", waits.wait, name="wait"),
    path("events", waits.events, name="events"),
    path("ws", waits.websocket_wanted, name="ws"),
]
