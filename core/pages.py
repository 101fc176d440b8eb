"""What every app's pages share: business-rule errors shown where the user looks."""

from django import forms
from django.contrib import messages
from django.http import HttpRequest

from core.errors import ApplicationError


def form_errors_apply(
    form: forms.Form, error: ApplicationError, fields: dict[str, str] | None = None
) -> None:
    """Put a service's field errors on the form's inputs (`fields` maps a service's
    field name to the form's where they differ); unknown ones and a bare message
    go on top of the form."""
    fields = fields or {}
    for name, problems in error.errors.items():
        field = fields.get(name, name)
        for problem in problems:
            form.add_error(field if field in form.fields else None, problem)
    if not error.errors:
        form.add_error(None, error.message)


def flash_error(request: HttpRequest, error: ApplicationError) -> None:
    """A business-rule refusal as one message on the next page."""
    details = "; ".join(message for errors in error.errors.values() for message in errors)
    messages.error(request, f"{error.message} {details}".strip())
