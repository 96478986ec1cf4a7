"""Signals about experiments, for apps that act beside them without this app knowing them."""

from django.dispatch import Signal

# Sent (sender=Experiment, experiment=..., status=...) before a researcher's status change is saved. A
# receiver that raises vetoes it: the change is not saved and the exception's text is shown (e.g. the
# linked Prolific study could not be paused, webapp/recruit/receivers.py).
status_changing = Signal()
