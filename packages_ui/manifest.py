"""The manifest: what an index serves, written by the portal to the config share.

The index server (provisioning/index_server.py) serves exactly the files listed here, with the
hashes recorded at upload, and re-reads the file when it changes: a new manifest is how new files
go live, without restarting anything. Built from the PackageFile rows only, so every file an
index serves went through the portal's checks and has a record.
"""

from __future__ import annotations

import hashlib
import json

from packages_ui.models import PackageFile
from provisioning.models import PrivateIndex


def _entry(package: PackageFile) -> dict:
    yanked: bool | str = (package.yanked_reason or True) if package.yanked else False
    return {
        "filename": package.filename,
        "project": package.project,
        "version": package.version,
        "sha256": package.sha256,
        "size": package.size,
        "upload_time": package.uploaded_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "requires_python": package.requires_python or None,
        "yanked": yanked,
        "metadata_sha256": package.metadata_sha256 or None,
    }


def index_manifest(index: PrivateIndex) -> bytes:
    """The manifest's bytes. The same rows give the same bytes, so an unchanged manifest is not
    rewritten; the generation is a digest of the listed files."""
    files = [_entry(p) for p in index.package_files.served().order_by("filename")]
    listing = json.dumps(files, sort_keys=True).encode()
    manifest = {
        "version": 1,
        "generation": hashlib.sha256(listing).hexdigest()[:16],
        "index": index.name,
        "upload_url": index.upload_url,
        "files": files,
    }
    return json.dumps(manifest, indent=1, sort_keys=True).encode()
