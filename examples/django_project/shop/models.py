from django.db import models


class Order(models.Model):
    email = models.CharField(max_length=255)
    total = models.IntegerField()


class Receipt(models.Model):
    order = models.OneToOneField(Order, on_delete=models.CASCADE)
    text = models.CharField(max_length=255)


class Audit(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE)
    note = models.CharField(max_length=255)


class Count(models.Model):
    orders = models.IntegerField()
    at = models.DateTimeField(auto_now_add=True)
