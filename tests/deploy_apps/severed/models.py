from django.db import models


class Cut(models.Model):
    value = models.IntegerField()

    def __str__(self):
        return str(self.pk)
