"""`python -m utils.build`: build the learner copies, the README's lesson table, and a class release (the code is in `utils.instructor.build`)."""

import sys

from utils.instructor.build import main

if __name__ == "__main__":
    sys.exit(main())
