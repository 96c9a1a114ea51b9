"""The Django app's tables: an item and its owner, the relation /items?n_plus_one=1 walks one query at a time."""

from django.db import models

from wsgilab.container import database


class Owner(models.Model):
    name = models.TextField(unique=True)


class Item(models.Model):
    name = models.CharField(max_length=database.MAX_NAME)
    owner = models.ForeignKey(Owner, on_delete=models.PROTECT, related_name="items")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=~models.Q(name=""), name="item_name_not_empty")]
