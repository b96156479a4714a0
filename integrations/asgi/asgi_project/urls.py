from asgi_app import views
from django.urls import path

urlpatterns = [
    path("rows/count", views.count),
    path("rows/list", views.listing),
    path("rows/stream", views.stream),
    path("rows/<str:name>", views.get_row),
    path("write/<str:name>", views.write),
    path("parked", views.parked),
    path("release", views.release),
    path("db-sleep", views.db_sleep),
    path("status", views.status),
]
