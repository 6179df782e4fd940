from __future__ import annotations

from django import forms

from packages_ui.services import MIRROR_PLATFORMS, MIRROR_PYTHON_VERSIONS


class MirrorForm(forms.Form):
    requirements = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "placeholder": "requests==2.32.3"}),
        help_text="One requirement per line, as in requirements.txt (no options, no URLs). "
        "Dependencies are downloaded too.",
    )
    python_version = forms.ChoiceField(choices=[(v, v) for v in MIRROR_PYTHON_VERSIONS], initial="3.12")
    platform = forms.ChoiceField(choices=[(p, p) for p in MIRROR_PLATFORMS], initial=MIRROR_PLATFORMS[0])
