"""URLs of the tenant web project (every tenant serves the same ones)."""

from django.urls import path

from integrations.composed.notes_app import views

urlpatterns = [path("notes/", views.notes)]
