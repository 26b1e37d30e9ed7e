"""`python -m utils.benchmark`: time the lessons' exercises and the grader (the code is in `utils.instructor.benchmark`)."""

import sys

from utils.instructor.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
