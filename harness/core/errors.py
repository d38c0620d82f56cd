"""Errors a user can act on. The CLI prints them as one line; nothing else should reach a user as a traceback."""


class HarnessError(Exception):
    """Base class for errors with a message meant for the user."""


class PathError(HarnessError):
    """A problem with one file or folder; the message is "PATH: problem" so the user knows where to look."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class VolumeError(PathError):
    """A volume file or DICOM folder could not be turned into a 3D Volume."""


class HarnessWarning(UserWarning):
    """Something the user should know about but that does not stop the work (e.g. a series was chosen for them)."""
