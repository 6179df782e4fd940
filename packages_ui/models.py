"""What lives in an index: one row per distribution file on its package share, and mirror runs."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from packaging.version import InvalidVersion, Version

from provisioning.models import PrivateIndex


class PackageFileQuerySet(models.QuerySet):
    def present(self) -> PackageFileQuerySet:
        """Files on the index now (deleted files stay as rows, so their names stay taken)."""
        return self.exclude(state=PackageFile.State.DELETED)

    def served(self) -> PackageFileQuerySet:
        """What the index's manifest lists: present files whose bytes are as recorded."""
        return self.present().exclude(problem=PackageFile.Problem.CHANGED).exclude(problem=PackageFile.Problem.MISSING)


class PackageFile(models.Model):
    """A distribution file that passed the portal's checks and was written to an index's package
    share. `stored`: written; `live`: the index's own /simple/<project>/ page was seen serving it;
    `deleted`: removed by an admin, the row kept so that neither the file name nor the file's
    identity can ever be used again on this index (PyPI's rule: versions are immutable)."""

    class State(models.TextChoices):
        STORED = "stored", "Stored"
        LIVE = "live", "Live"
        DELETED = "deleted", "Deleted"

    class Source(models.TextChoices):
        UPLOAD = "upload", "Upload"
        API = "api", "Upload API (twine)"
        MIRROR = "mirror", "Mirrored from PyPI"
        RESYNC = "resync", "Found on the share"

    class Problem(models.TextChoices):
        # Found by the integrity check, which compares the share with these rows by sha256.
        NONE = "", "None"
        CHANGED = "changed", "Changed on the share"
        MISSING = "missing", "Missing from the share"

    index = models.ForeignKey(PrivateIndex, on_delete=models.CASCADE, related_name="package_files")
    project = models.CharField(max_length=200)  # normalized (PEP 503)
    version = models.CharField(max_length=100)  # normalized (PEP 440)
    filename = models.CharField(max_length=255)
    # The parsed, normalized identity (project, version, build tag, tags; one sdist per release):
    # two spellings of the same file collide here.
    identity = models.CharField(max_length=400)
    kind = models.CharField(max_length=8)  # wheel | sdist
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The token's label when the file came through the upload API.
    uploaded_via = models.CharField(max_length=100, blank=True, default="")
    uploaded_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.UPLOAD)
    state = models.CharField(max_length=16, choices=State.choices, default=State.STORED)
    live_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    problem = models.CharField(max_length=16, choices=Problem.choices, blank=True, default="")
    checked_at = models.DateTimeField(null=True, blank=True)  # last integrity check of its bytes
    # What the index announces for the file (PEP 503/592/658/700).
    requires_python = models.CharField(max_length=255, blank=True, default="")
    metadata_sha256 = models.CharField(max_length=64, blank=True, default="")
    yanked = models.BooleanField(default=False)
    yanked_reason = models.TextField(blank=True, default="")

    objects = PackageFileQuerySet.as_manager()

    class Meta:
        ordering = ["project", "filename"]
        constraints = [
            # Versions are immutable: a file name and a file identity are used once per index, ever.
            models.UniqueConstraint(fields=["index", "filename"], name="package_file_once_per_index"),
            models.UniqueConstraint(fields=["index", "identity"], name="package_identity_once_per_index"),
        ]
        indexes = [models.Index(fields=["index", "project"]), models.Index(fields=["index", "state"])]

    def __str__(self) -> str:
        return self.filename

    @property
    def is_live(self) -> bool:
        return self.state == self.State.LIVE

    @property
    def is_deleted(self) -> bool:
        return self.state == self.State.DELETED

    @property
    def sort_version(self) -> Version:
        try:
            return Version(self.version)
        except InvalidVersion:
            return Version("0")


class UnrecordedFile(models.Model):
    """A file on an index's package share that the portal did not write (no PackageFile row).
    The index never serves it (it serves only its manifest); the integrity check lists it here
    until an admin adopts it (after validation) or removes it."""

    index = models.ForeignKey(PrivateIndex, on_delete=models.CASCADE, related_name="unrecorded_files")
    path = models.CharField(max_length=1024)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    found_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["path"]
        constraints = [models.UniqueConstraint(fields=["index", "path"], name="unrecorded_file_once")]

    def __str__(self) -> str:
        return self.path


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
