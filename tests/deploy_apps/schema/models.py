from django.db import models


class Note(models.Model):
    text = models.CharField(max_length=100)

    def __str__(self):
        return str(self.pk)
