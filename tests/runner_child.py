"""`harness eval` with the runner test task, as a separate process (for kill -9 and lock tests).

    python -m tests.runner_child EVAL-ARGS...
"""

import sys

from tests import runner_fixtures

_installed = runner_fixtures.install()
_installed.__enter__()  # for the life of this process (the reference keeps it from being closed)

from harness.cli import main  # noqa: E402

sys.argv = ["harness", "eval", "--no-privacy", *sys.argv[1:]]
main()
