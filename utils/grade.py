"""`python -m utils.grade`: grade a class's notebooks (the code is in `utils.instructor.grade`)."""

import sys

from utils.instructor.grade import main

if __name__ == "__main__":
    sys.exit(main())
