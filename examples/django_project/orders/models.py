from django.db import models


class Order(models.Model):
    item = models.CharField(max_length=100)
    status = models.CharField(max_length=20, default="placed")
    fulfilled_by = models.CharField(max_length=200, blank=True, default="")

    def __str__(self) -> str:
        return f"order {self.pk}: {self.item} ({self.status})"
