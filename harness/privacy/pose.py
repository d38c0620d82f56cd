"""Where a head's face is and which way it looks: the template fit the defacers already do, read as a pose.

The pydeface average head looks straight ahead along its world axes, and its eye centres are known (the phantom
anatomy's landmarks). Its affine fit onto a subject (defacers.template.fit_template, memoised per volume in the
process, so the defacers of one case share it) carries the template's anterior and superior axes and the point
between its eyes onto the subject. Only the rotation of the fit is kept (polar decomposition): the scales and shear
describe the subject's head shape, which the render must show, not undo.

A volume without a face to render raises NoFaceInView with the reason: no head, a skull-stripped brain (the fit's
own refusals), or a field of view that ends above the eyes or the mouth.
"""

from __future__ import annotations

import numpy as np

from defacers.registration import LPS_FROM_RAS, RegistrationError
from defacers.template import fit_template, pydeface_template
from harness.core.errors import HarnessError
from harness.core.volume import Volume
from harness.imaging.face_render import FacePose
from harness.phantoms.anatomy import TEMPLATE_EYE_CENTRES

# The mouth lies this far below the eyes (mm, average adult): a field of view must reach it for a face to be seen.
MOUTH_BELOW_EYES_MM = 70.0


class NoFaceInView(HarnessError):
    """The volume shows no face that could be rendered (recorded as such: neither re-identified nor private)."""


def face_pose(volume: Volume) -> FacePose:
    """The pose of the volume's face; raises NoFaceInView when the fit fails or the face is not in view."""
    pose = fitted_pose(volume)
    _check_in_view(volume, pose)
    return pose


def fitted_pose(volume: Volume) -> FacePose:
    """The template fit read as a pose, whether or not the field of view holds the face (raises NoFaceInView only
    when the fit itself fails): for a diagnostic of a head cut below the eyes, never for the attack."""
    try:
        fit = fit_template(volume)
    except RegistrationError as exc:
        raise NoFaceInView(f"no face in view: {exc}") from None
    transform = fit.registration.transform  # subject LPS -> template LPS
    template = pydeface_template().head
    eyes_ijk = np.mean(np.asarray(TEMPLATE_EYE_CENTRES, dtype=np.float64), axis=0)
    eyes_template_lps = LPS_FROM_RAS @ template.voxel_to_world(eyes_ijk)
    eyes = LPS_FROM_RAS @ np.asarray(transform.GetInverse().TransformPoint([float(v) for v in eyes_template_lps]))
    u, _, vt = np.linalg.svd(np.array(transform.GetMatrix()).reshape(3, 3))
    rotation = u @ vt  # subject LPS directions -> template LPS directions
    # A template direction d (RAS) is the subject direction R^T d, both converted through LPS.
    to_subject = LPS_FROM_RAS @ rotation.T @ LPS_FROM_RAS
    right, anterior, superior = (to_subject @ axis for axis in np.eye(3))
    return FacePose(tuple(eyes), tuple(right), tuple(anterior), tuple(superior))


def _check_in_view(volume: Volume, pose: FacePose) -> None:
    """Refuse a field of view that ends above the eyes or the mouth (a CT cut at the orbits)."""
    eyes = np.asarray(pose.anchor)
    for name, point in (("eyes", eyes), ("mouth", eyes - MOUTH_BELOW_EYES_MM * np.asarray(pose.superior))):
        ijk = volume.world_to_voxel(point)
        if np.any(ijk < -0.5) or np.any(ijk > np.asarray(volume.shape) - 0.5):
            raise NoFaceInView(f"no face in view: the field of view ends before the {name} "
                               f"(expected at voxel {', '.join(f'{v:.0f}' for v in ijk)} of a {volume.shape} grid)")
