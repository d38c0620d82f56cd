"""`deepdefacer`: the published 3D U-Net of DeepDefacer (Khazane et al. 2019, MIT licence), run with its own weights.

The network (Keras 2.2, 1,412,197 parameters, channels-first) predicts a keep mask (1 keep, 0 face) for a T1 head
resampled to 160^3. Its preprocessing is reproduced from deepdefacer 2.1.2 (defacer_utils.py): the voxel grid is
resampled linearly onto 160^3 points spread over the volume's whole extent along each axis, min-max normalised;
the output is thresholded at 0.5 and brought back to the input grid, and the voxels it does not keep become air.
Two differences, both deliberate: the volume goes in as harness holds every volume (canonical RAS; the original
feeds the file's storage order, so an LPS-stored file would reach it flipped), and the mask comes back by nearest
neighbour, so it stays a mask (the original interpolates it linearly and multiplies, dimming a rim of kept voxels).
The network is not tuned or retrained here.

Keras 3 loads the legacy HDF5 file on any of its backends. harness asks for the torch backend (torch is installed
before harness) only when the user has not chosen one in KERAS_BACKEND: overwriting it would switch Keras under a
user who runs TensorFlow or JAX in the same process, and their backend runs this network just as well.
Keras is imported only when this defacer runs (`pip install 'defacing-harness[deepdefacer]'`).
The weights are fetched on first use (defacers.weights). The QC face region comes from the same template fit as
every other defacer's, so its face measures compare with theirs.
"""

from __future__ import annotations

import os
import time
from functools import lru_cache

import numpy as np
from scipy import ndimage

from defacers.base import DefacerError, DefacerOutput, air_value
from defacers.registration import REG_VERSION
from defacers.registry import register_defacer
from defacers.template import TemplateDefacer, fit_template
from defacers.weights import PublishedWeights
from harness.core.volume import Volume
from harness.imaging.brainmask import BRAINMASK_VERSION

WEIGHTS = PublishedWeights(
    package="deepdefacer",
    version="2.1.2",
    member="deepdefacer/model.hdf5",
    sha256="d92b9e6d3cc2fc936b497d56328a09e621b8243ea4858de712e33862e4d5e747",
    sdist_sha256="6dda7723cf006bcc157f746e348287f5d1dd361f764a74b830cbcc3afafdbe28",
)
NETWORK_SIZE = 160  # the original's `optimal_dims`
KEEP_THRESHOLD = 0.5
INSTALL_HINT = "pip install 'defacing-harness[deepdefacer]' (keras>=3 and h5py)"


def resample_axes(data: np.ndarray, shape: tuple[int, ...], *, order: int) -> np.ndarray:
    """`data` resampled onto `shape` as the original does (SimpleITK, grid centres aligned, each axis's extent spread
    over the new points): output point i of an axis with n_in voxels and n_out points reads the input at
    n_in/2 + (i - n_out/2) * (n_in - 1) / (n_out - 1)."""
    scale = [(n_in - 1) / (n_out - 1) for n_in, n_out in zip(data.shape, shape)]
    offset = [n_in / 2 - n_out / 2 * s for n_in, n_out, s in zip(data.shape, shape, scale)]
    # mode="nearest": SimpleITK counts points up to half a voxel outside the grid as inside
    return ndimage.affine_transform(data, scale, offset=offset, output_shape=tuple(shape), order=order, mode="nearest")


def to_network_input(data: np.ndarray) -> np.ndarray:
    """(1, 1, 160, 160, 160) float32: the volume resampled linearly onto the network grid, min-max normalised."""
    resampled = resample_axes(data.astype(np.float32), (NETWORK_SIZE,) * 3, order=1)
    lo, hi = float(resampled.min()), float(resampled.max())
    return ((resampled - lo) / (hi - lo + 1e-7)).astype(np.float32)[None, None]


def keep_mask(prediction: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The network's output (..., 160, 160, 160) thresholded at 0.5 and brought back to `shape` (nearest)."""
    keep = np.asarray(prediction, dtype=np.float32).reshape((NETWORK_SIZE,) * 3) >= KEEP_THRESHOLD
    return resample_axes(keep.astype(np.uint8), shape, order=0).astype(bool)


@lru_cache(maxsize=1)
def load_network(path: str):
    """The Keras model (loaded once per process), on the user's Keras backend or else torch."""
    # setdefault, not assignment: a user who chose TensorFlow or JAX keeps it (Keras 3 reads this once, at import)
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError as exc:
        raise DefacerError(f"deepdefacer needs Keras 3: {INSTALL_HINT} ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - a backend that fails at import (KERAS_BACKEND naming one not installed)
        backend = os.environ.get("KERAS_BACKEND")
        raise DefacerError(f"deepdefacer: Keras could not start its {backend!r} backend (KERAS_BACKEND): {exc}") from None
    try:
        return keras.models.load_model(path, compile=False)  # compile=False: its training loss is not needed
    except ImportError as exc:
        raise DefacerError(f"deepdefacer needs h5py to read its weights: {INSTALL_HINT} ({exc})") from None
    except (OSError, ValueError, TypeError) as exc:
        raise DefacerError(f"{path}: Keras cannot load the DeepDefacer network: {exc}") from None


def keras_backend() -> str:
    import keras

    return f"keras {keras.__version__} ({keras.backend.backend()})"


@register_defacer
class DeepDefacer(TemplateDefacer):
    name = "deepdefacer"
    # the weights, the template fit and the brain mask decide the output and its QC
    version = f"1+{WEIGHTS.version}+{REG_VERSION}+{BRAINMASK_VERSION}"
    family, modalities, runs = "network", ("MR",), "published weights"

    @property
    def identity(self) -> dict:
        return {**super().identity, "weights_sha256": WEIGHTS.sha256}

    def _deface(self, volume: Volume) -> DefacerOutput:
        if volume.modality != "MR":
            raise DefacerError(f"deepdefacer was trained on T1-weighted MR heads; it does not deface {volume.modality}")
        fit = fit_template(volume)  # the QC face region; it also refuses flipped, skull-stripped or non-head input
        start = time.perf_counter()
        network = load_network(str(WEIGHTS.path()))
        t_load = time.perf_counter() - start
        start = time.perf_counter()
        prediction = network.predict(to_network_input(volume.data), verbose=0)
        keep = keep_mask(prediction, volume.shape)
        t_predict = time.perf_counter() - start
        data = np.where(keep, volume.data, air_value(volume))
        timings = {"qc_registration": fit.seconds, "load_network": t_load, "deface": t_predict}
        qc = {"network_removed_voxels": int((~keep).sum()), "network_runtime": keras_backend()}
        return DefacerOutput(data, fit.face, fit.registration, timings, qc=qc)
