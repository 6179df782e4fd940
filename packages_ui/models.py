"""What lives in an index: one row per distribution file on its package share, and mirror runs."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from packaging.version import InvalidVersion, Version

from provisioning.models import PrivateIndex


class PackageFile(models.Model):
    """A distribution file stored on an index's package share. `stored` means written to the
    share; `live` means the index's own /simple/<project>/ page was seen serving it."""

    class State(models.TextChoices):
        STORED = "stored", "Stored"
        LIVE = "live", "Live"

    class Source(models.TextChoices):
        UPLOAD = "upload", "Upload"
        MIRROR = "mirror", "Mirrored from PyPI"
        RESYNC = "resync", "Found on the share"

    index = models.ForeignKey(PrivateIndex, on_delete=models.CASCADE, related_name="package_files")
    project = models.CharField(max_length=200)  # normalized (PEP 503)
    version = models.CharField(max_length=100)  # normalized (PEP 440)
    filename = models.CharField(max_length=255)
    kind = models.CharField(max_length=8)  # wheel | sdist
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    uploaded_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.UPLOAD)
    state = models.CharField(max_length=16, choices=State.choices, default=State.STORED)
    live_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "filename"]
        constraints = [
            # Versions are immutable: one file name once per index (an admin may overwrite it).
            models.UniqueConstraint(fields=["index", "filename"], name="package_file_once_per_index"),
        ]
        indexes = [models.Index(fields=["index", "project"]), models.Index(fields=["index", "state"])]

    def __str__(self) -> str:
        return self.filename

    @property
    def is_live(self) -> bool:
        return self.state == self.State.LIVE

    @property
    def sort_version(self) -> Version:
        try:
            return Version(self.version)
        except InvalidVersion:
            return Version("0")


class MirrorRun(models.Model):
    """One "Mirror from PyPI" request: pip download, then validation and storing, file by file."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        DOWNLOADING = "downloading", "Downloading"
        STORING = "storing", "Validating and storing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    index = models.ForeignKey(PrivateIndex, on_delete=models.CASCADE, related_name="mirror_runs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    requirements = models.TextField()
    python_version = models.CharField(max_length=8)
    platform = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    # pip's output, so the page can show what is being downloaded.
    log = models.TextField(blank=True, default="")
    # One entry per downloaded file: {"filename", "outcome": stored|present|rejected, "message"}.
    results = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"mirror #{self.pk} into {self.index}"

    @property
    def is_active(self) -> bool:
        return self.state in {self.State.QUEUED, self.State.DOWNLOADING, self.State.STORING}

    @property
    def requirement_lines(self) -> list[str]:
        return [line for line in self.requirements.splitlines() if line.strip()]
