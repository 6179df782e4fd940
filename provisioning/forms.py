from __future__ import annotations

from django import forms
from django.conf import settings

from provisioning.models import IndexCredential, PrivateIndex, Team, validate_index_name


class IndexRequestForm(forms.Form):
    name = forms.CharField(
        max_length=63,
        help_text="3–63 lowercase letters, digits and hyphens; it becomes part of the index's address.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "autofocus": True}),
    )
    team = forms.ModelChoiceField(queryset=Team.objects.none(), empty_label=None)
    size = forms.ChoiceField(choices=())

    def __init__(self, *args, teams, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams
        self.fields["size"].choices = [(key, value["label"]) for key, value in settings.INDEX_SIZES.items()]
        self.fields["size"].initial = settings.INDEX_DEFAULT_SIZE

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        validate_index_name(name)
        if PrivateIndex.objects.holding_name(name).exists():
            raise forms.ValidationError(f"An index named {name} already exists.", code="taken")
        return name


class CredentialForm(forms.Form):
    label = forms.CharField(max_length=100, required=False, help_text="What it is for, e.g. “CI” or “laptop”.")
    kind = forms.ChoiceField(choices=IndexCredential.Kind.choices, initial=IndexCredential.Kind.READ)
