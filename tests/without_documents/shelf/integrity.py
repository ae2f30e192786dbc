from django.db.models import Q

from deployguard.integrity import Rule, register

from .models import Book

register(
    Rule(
        id="shelf.E001",
        severity="error",
        model=Book,
        description="book without a title",
        condition=lambda: Q(title=""),
    )
)
