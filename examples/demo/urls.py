from django.urls import path

from examples.demo.shop import views

urlpatterns = [
    path("health", views.health),
    path("product/<int:pk>", views.product),
]
