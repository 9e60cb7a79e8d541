"""One router per resource: videos, questions, jobs, health."""
