"""`python -m utils.figures`: draw the static figures in figures/ (the code is in `utils.instructor.figures`)."""

import sys

from utils.instructor.figures import main

if __name__ == "__main__":
    sys.exit(main())
