"""Published network weights that ship inside a package's source archive on PyPI, fetched once into the cache.

Some defacers publish their trained network only inside their sdist, next to code whose dependencies can no longer
be installed (DeepDefacer's name the retired `sklearn` package). The archive is fetched with `pip download --no-deps
--no-binary :all:` (so the user's pip configuration - index mirror, proxy, certificates - applies), its sha256
checked against the published release, and only the weights file is read out of it (nothing in it is run by us or
installed). Both hashes are pinned: a changed archive or file is refused, never used.

Layout: <cache>/weights/<package>-<version>/<file name>. On a machine without internet, put the archive
(`<package>-<version>.tar.gz`, downloaded elsewhere with the same pip command) into that folder: it is used as is.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from defacers.base import DefacerError
from harness.core.config import default_cache_dir
from harness.core.files import atomic_write_bytes

MAX_WEIGHTS_BYTES = 512 << 20  # a larger member is not the small network we pinned: refuse before reading it
PIP_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class PublishedWeights:
    package: str
    version: str
    member: str  # path of the weights inside the archive, below its top folder, e.g. "deepdefacer/model.hdf5"
    sha256: str  # of the weights file
    sdist_sha256: str  # of the archive PyPI serves for this release

    @property
    def archive_name(self) -> str:
        return f"{self.package}-{self.version}.tar.gz"

    @property
    def pip_command(self) -> str:
        return f"pip download --no-deps --no-binary :all: {self.package}=={self.version}"

    def folder(self, cache_dir=None) -> Path:
        base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return base / "weights" / f"{self.package}-{self.version}"

    def path(self, cache_dir=None) -> Path:
        """The weights file, checked by sha256; fetched (or read out of an archive put there by hand) on first use."""
        folder = self.folder(cache_dir)
        target = folder / PurePosixPath(self.member).name
        if target.is_file() and _sha256(target.read_bytes()) == self.sha256:
            return target
        archive = folder / self.archive_name
        if not archive.is_file():
            self._download(folder)
        atomic_write_bytes(target, self.extract(archive))
        return target

    def extract(self, archive: Path) -> bytes:
        """The weights file's bytes out of the release archive, after checking both against their pinned hashes."""
        try:
            blob = archive.read_bytes()
        except OSError as exc:
            raise DefacerError(f"{archive}: cannot read the {self.package} archive: {exc}") from None
        if _sha256(blob) != self.sdist_sha256:
            raise DefacerError(
                f"{archive}: not the published {self.archive_name} (sha256 {_sha256(blob)[:12]}..., expected "
                f"{self.sdist_sha256[:12]}...); delete it and run again, or fetch it with `{self.pip_command}`"
            )
        name = f"{self.package}-{self.version}/{self.member}"
        try:
            with tarfile.open(archive, "r:gz") as tar:
                info = tar.getmember(name)
                if not info.isfile() or info.size > MAX_WEIGHTS_BYTES:
                    raise KeyError(name)
                data = tar.extractfile(info).read()
        except (tarfile.TarError, KeyError, OSError, EOFError) as exc:
            raise DefacerError(f"{archive}: no usable {name} inside ({type(exc).__name__}: {exc})") from None
        if _sha256(data) != self.sha256:
            raise DefacerError(f"{archive}: {name} is not the published weights file (sha256 mismatch)")
        return data

    def _download(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
            argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
                    "--quiet", "--dest", tmp, f"{self.package}=={self.version}"]
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, stdin=subprocess.DEVNULL)
                failure = (proc.stderr or proc.stdout).strip().splitlines()[-1:] if proc.returncode else None
            except (OSError, subprocess.TimeoutExpired) as exc:
                failure = [str(exc)]
            fetched = Path(tmp) / self.archive_name
            if failure is not None or not fetched.is_file():
                said = f" (pip: {failure[0]})" if failure else ""
                raise DefacerError(
                    f"could not download the {self.package} {self.version} weights from PyPI{said}. Without internet: "
                    f"run `{self.pip_command}` on a machine that has it and copy {self.archive_name} into {folder}/"
                )
            fetched.replace(folder / self.archive_name)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
