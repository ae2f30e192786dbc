from django.db import models


class Mark(models.Model):
    label = models.CharField(max_length=20)

    def __str__(self):
        return str(self.pk)
