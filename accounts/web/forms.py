from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.utils.translation import gettext_lazy as _

from accounts.credit_code import credit_code_problem, normalise
from accounts.models import Organisation


class SignUpForm(UserCreationForm):
    email = forms.EmailField(label=_("E-mail"))
    kind = forms.ChoiceField(
        label=_("I am a"),
        choices=[
            (Organisation.Kind.BUYER, _("Enterprise buying compute")),
            (Organisation.Kind.PROVIDER, _("Computing centre selling compute")),
        ],
        widget=forms.RadioSelect,
    )
    legal_name = forms.CharField(label=_("Organisation legal name"), max_length=200)
    credit_code = forms.CharField(
        label=_("Unified social credit code"),
        max_length=24,
        help_text=_("18 characters, as printed on the business licence."),
    )
    region = forms.CharField(label=_("Province"), max_length=32, required=False)

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ["username", "email"]

    def clean_credit_code(self) -> str:
        code = normalise(self.cleaned_data["credit_code"])
        problem = credit_code_problem(code)
        if problem:
            raise forms.ValidationError(problem)
        return code
