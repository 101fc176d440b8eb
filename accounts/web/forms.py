from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.utils.translation import gettext_lazy as _

from accounts.credit_code import credit_code_problem, normalise
from accounts.models import Membership, Organisation


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


ROLE_CHOICES = [
    (role.value, role.label)
    for role in (Membership.Role.ADMIN, Membership.Role.MEMBER, Membership.Role.READ_ONLY)
]


class InvitationForm(forms.Form):
    email = forms.EmailField(label=_("E-mail"))
    role = forms.ChoiceField(label=_("Role"), choices=ROLE_CHOICES)


class AuthorityInviteForm(forms.Form):
    legal_name = forms.CharField(label=_("Authority's legal name"), max_length=200)
    credit_code = forms.CharField(
        label=_("Unified social credit code"), max_length=24, help_text=_("18 characters")
    )
    region = forms.CharField(label=_("Region"), max_length=32, required=False)
    email = forms.EmailField(label=_("E-mail of its first administrator"), max_length=254)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=ROLE_CHOICES)


class InvitationAcceptForm(forms.Form):
    username = forms.CharField(
        label=_("Username"), max_length=150, validators=[UnicodeUsernameValidator()]
    )
    password1 = forms.CharField(
        label=_("Password"), strip=False, widget=forms.PasswordInput, max_length=128
    )
    password2 = forms.CharField(
        label=_("Password again"), strip=False, widget=forms.PasswordInput, max_length=128
    )

    def clean(self):
        data = super().clean()
        if data.get("password1") != data.get("password2"):
            self.add_error("password2", _("The two passwords differ."))
        return data


class WebhookEndpointForm(forms.Form):
    url = forms.URLField(label=_("Endpoint URL"), max_length=500, assume_scheme="https")
    description = forms.CharField(label=_("Description"), max_length=200, required=False)
    event_types = forms.MultipleChoiceField(
        label=_("Events"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: every event."),
    )

    def __init__(self, *args, **kwargs):
        from accounts.webhooks import EVENT_TYPES

        super().__init__(*args, **kwargs)
        self.fields["event_types"].choices = [
            (name, name) for name in EVENT_TYPES if name != "webhook.test"
        ]
