"""One page with the shape that makes per-query release pay off: a query, a slow
call to something that is not the database, another query."""

from __future__ import annotations

import time

from django.conf import settings
from django.db.models import F
from django.http import HttpRequest, HttpResponse, JsonResponse

from .models import Product


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


def pricing_service(product: Product) -> int:
    """Stands for an HTTP call to another service: no database involved."""
    time.sleep(settings.DEMO_WORK_MS / 1000)
    return product.price_cents


def product(request: HttpRequest, pk: int) -> JsonResponse:
    item = Product.objects.only("id", "name", "price_cents").get(pk=pk)
    price = pricing_service(item)
    Product.objects.filter(pk=pk).update(views=F("views") + 1)
    return JsonResponse({"id": item.pk, "name": item.name, "price_cents": price})
