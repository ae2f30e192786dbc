from django.db import models


class Damage(models.Model):
    value = models.IntegerField()

    def __str__(self):
        return str(self.pk)
