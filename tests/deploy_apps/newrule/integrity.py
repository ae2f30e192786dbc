from django.db.models import Q

from deployguard.integrity import Rule, register

from .models import Label

register(
    Rule(
        id="newrule.E001",
        severity="error",
        model=Label,
        description="label without text",
        condition=lambda: Q(text=""),
    )
)
