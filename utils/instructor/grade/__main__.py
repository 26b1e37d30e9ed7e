"""`python -m utils.instructor.grade`: the same as `python -m utils.grade`."""

import sys

from utils.instructor.grade.main import main

sys.exit(main())
