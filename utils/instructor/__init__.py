"""The instructor's tools: build the learner copies and a class release, grade a class,
benchmark, draw the static figures. Lessons never import these; a class release leaves them out.
"""
