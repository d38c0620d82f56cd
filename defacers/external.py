"""Adapters for installed defacing tools: write the volume to a temporary NIfTI, run the tool, read its output back.

The result gets the same QC record as the native defacers (template face region, brain mask of the original).
A missing tool is a clear DefacerError saying how to install it; a failing tool reports its exit code and the
end of its stderr.

Command templates are argument lists with placeholders: {input} (NIfTI given to the tool), {output} (NIfTI path
the tool must write), {outdir} (an empty folder the tool may fill; `output_glob` then finds the result), {mask}
(our brain mask as NIfTI, for tools that need one) and any adapter parameter by name.
"""

from __future__ import annotations

import dataclasses
import inspect
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from defacers.base import DefacerError, DefacerOutput, on_same_grid
from defacers.registration import REG_VERSION
from defacers.registry import register_defacer
from defacers.template import TemplateDefacer, fit_template
from harness.core.errors import HarnessError
from harness.core.hashing import fingerprint
from harness.core.volume import Volume
from harness.imaging.brainmask import BRAINMASK_VERSION, brain_mask
from harness.imaging.io import load_nifti, save_nifti

DEFAULT_TIMEOUT_S = 3600.0
COMMAND_PARAM = "command"  # external:cmd's own argv template; never a placeholder value


@dataclass(frozen=True)
class ExternalTool:
    """An installed program adapted as a defacer: registered under `name`, called with parameters it makes one."""

    name: str
    executable: str  # "" for external:cmd, whose `command` parameter names the program
    command: tuple[str, ...]
    install_hint: str
    output_glob: str | None = None  # when the tool names its own output inside {outdir}
    also_needs: tuple[tuple[str, str], ...] = ()  # (executable, why/how to install)
    defaults: tuple[tuple[str, object], ...] = ()
    family: str = "any"  # how it hides the face (defacers.base.FAMILIES); external:cmd runs whatever it is given
    modalities: tuple[str, ...] = ("MR",)
    runs = "external tool"

    def __call__(self, **params) -> "ExternalDefacer":
        return ExternalDefacer(self, **params)

    @property
    def version(self) -> str:
        return ExternalDefacer.version

    def parameters(self) -> dict[str, object]:
        """Its named parameters and defaults; any other KEY=VALUE fills {KEY} in its command."""
        named = {COMMAND_PARAM: inspect.Parameter.empty, "output_glob": None} if not self.executable else {}
        return {**named, **dict(self.defaults), "timeout_s": DEFAULT_TIMEOUT_S}

    def missing(self) -> str | None:
        """Why this tool cannot run here (what to install), or None when it can."""
        if not self.executable:
            return None
        if shutil.which(self.executable) is None:
            return f"{self.executable!r} is not installed or not on PATH; {self.install_hint}"
        for other, why in self.also_needs:
            if shutil.which(other) is None:
                return f"{other!r} is not on PATH; {why}"
        return None

    def for_command(self, command, output_glob: str | None = None) -> "ExternalTool":
        """external:cmd made concrete: the user's command line becomes the tool."""
        if not command or not isinstance(command, str):
            raise DefacerError(f"{self.name} needs command='TOOL ARGS' with {{input}} and {{output}} placeholders")
        try:
            argv = tuple(shlex.split(command))
        except ValueError as exc:
            raise DefacerError(f"{self.name} cannot split command {command!r}: {exc}") from None
        if "{input}" not in command or ("{output}" not in command and "{outdir}" not in command):
            raise DefacerError(f"{self.name} command must contain {{input}} and {{output}}: {command!r}")
        hint = f"make sure {argv[0]!r} is installed and on PATH"
        return dataclasses.replace(self, executable=argv[0], command=argv, install_hint=hint, output_glob=output_glob)


EXTERNAL_TOOLS = (
    ExternalTool(
        "external:pydeface",
        "pydeface",
        ("pydeface", "{input}", "--outfile", "{output}", "--force"),
        "pip install pydeface (it also needs FSL's flirt: https://fsl.fmrib.ox.ac.uk/fsl/fslwiki/FslInstallation)",
        also_needs=(("flirt", "pydeface registers with FSL's flirt; install FSL and put $FSLDIR/bin on PATH"),),
        family="mask",
    ),
    ExternalTool(
        "external:mri_reface",
        "mri_reface",
        ("mri_reface", "{input}", "{outdir}", "-imType", "{im_type}"),
        "download mri_reface from https://www.nitrc.org/projects/mri_reface and put it on PATH",
        output_glob="*deFaced*.nii*",
        defaults=(("im_type", "T1"),),
        family="replace",
    ),
    ExternalTool(
        "external:afni_refacer",
        "@afni_refacer_run",
        ("@afni_refacer_run", "-input", "{input}", "-mode_{mode}", "-prefix", "{output}", "-overwrite"),
        "install AFNI (https://afni.nimh.nih.gov/pub/dist/doc/htmldoc/background_install/main_toc.html)",
        defaults=(("mode", "reface"),),
        family="replace",  # -mode_deface (mode=deface) masks instead
    ),
    ExternalTool(
        "external:quickshear-cli",
        "quickshear",
        ("quickshear", "{input}", "{mask}", "{output}", "{buffer}"),
        "pip install quickshear",
        defaults=(("buffer", 10.0),),
        family="shear",
    ),
    ExternalTool("external:cmd", "", (), "give command='tool {input} {output}' naming an installed program", modalities=("MR", "CT")),
)
for _tool in EXTERNAL_TOOLS:
    register_defacer(_tool)


class ExternalDefacer(TemplateDefacer):
    version = f"1+{REG_VERSION}+{BRAINMASK_VERSION}"  # the registration and brain mask decide the output and its QC
    accepts = None
    runs = ExternalTool.runs

    def __init__(self, tool: ExternalTool, **params):
        params = {**dict(tool.defaults), **params}
        timeout = float(params.pop("timeout_s", DEFAULT_TIMEOUT_S))  # how long to wait is not part of the result
        if not tool.executable:
            tool = tool.for_command(params.get(COMMAND_PARAM), params.get("output_glob"))
        super().__init__(**params)
        self.name = tool.name
        self.family, self.modalities = tool.family, tool.modalities
        self.tool = tool
        self.timeout = timeout

    @property
    def identity(self) -> dict:
        """Name, adapter version, params, and the sha256 of the installed executable: a different build of the tool is
        a different defacer. (For launcher scripts this covers the launcher only; pin tool versions by params.)"""
        identity = super().identity
        exe = shutil.which(self.tool.executable)
        identity["executable_sha256"] = fingerprint(exe) if exe else None
        return identity

    def _deface(self, volume: Volume) -> DefacerOutput:
        missing = self.tool.missing()
        if missing:
            raise DefacerError(f"{self.name}: {missing}")
        brain = brain_mask(volume)
        start = time.perf_counter()
        out = self._run_tool(volume, brain)
        t_tool = time.perf_counter() - start
        if not on_same_grid(out, volume):
            raise DefacerError(
                f"{self.name}: the tool's output grid {out.shape} differs from its input {volume.shape}; "
                "resampling tools are not supported"
            )
        fit = fit_template(volume)  # after the tool, so a broken tool is reported without waiting for the fit
        timings = {"qc_registration": fit.seconds, "deface": t_tool}
        return DefacerOutput(out.data, fit.face, fit.registration, timings, original_brain=brain)

    def _run_tool(self, volume: Volume, brain: np.ndarray) -> Volume:
        """Write the input (and {mask}) to a temporary folder, run the command, read back what it wrote."""
        exe = shutil.which(self.tool.executable)
        with tempfile.TemporaryDirectory(prefix="harness-deface-") as tmp:
            tmp = Path(tmp)
            values = {k: str(v) for k, v in self.params.items() if k != COMMAND_PARAM}
            values.update(input=str(save_nifti(volume, tmp / "input.nii.gz")), output=str(tmp / "output.nii.gz"))
            values["outdir"] = str(tmp / "out")
            (tmp / "out").mkdir()
            if any("{mask}" in a for a in self.tool.command):
                values["mask"] = str(save_nifti(volume.with_data(brain.astype(np.float32)), tmp / "mask.nii.gz", dtype=np.uint8))
            try:
                argv = [exe] + [a.format(**values) for a in self.tool.command[1:]]
            except (KeyError, IndexError, ValueError) as exc:
                raise DefacerError(f"{self.name}: command template {' '.join(self.tool.command)!r} has an unknown placeholder ({exc})") from None
            try:
                proc = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=self.timeout, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise DefacerError(f"{self.name}: {self.tool.executable} did not finish within {self.timeout:g} s") from None
            except OSError as exc:
                raise DefacerError(f"{self.name}: could not start {exe}: {exc}") from None
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
                raise DefacerError(f"{self.name}: {self.tool.executable} failed with exit code {proc.returncode}: " + " | ".join(tail))
            out_path = self._find_output(Path(values["output"]), tmp / "out")
            try:
                return load_nifti(out_path, modality=volume.modality)
            except HarnessError as exc:
                raise DefacerError(f"{self.name}: could not read the tool's output: {exc}") from None

    def _find_output(self, output: Path, outdir: Path) -> Path:
        if output.is_file():
            return output
        glob = self.tool.output_glob
        found = sorted(outdir.glob(glob)) if glob else [p for p in sorted(outdir.iterdir()) if p.name.endswith((".nii", ".nii.gz"))]
        if not found:
            raise DefacerError(f"{self.name}: {self.tool.executable} exited normally but wrote no NIfTI output")
        return found[0]
