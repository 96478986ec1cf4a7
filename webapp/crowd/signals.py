"""Signals about participants' data, for apps that keep something derived from it without this app knowing
them (the researcher side's cached summary of a study)."""

from django.dispatch import Signal

# Sent (sender=Participant, experiment_id=...) after the commit of a transaction that erased data of the
# study's participants (their judgments, or their platform ids): whatever is cached from it is stale.
data_erased = Signal()

# Sent (sender=Participant, experiment_id=..., platform=..., worker_ids=[...]) inside the transaction that
# erases these workers' data or platform ids: whatever else records them (the recruiting decisions) blanks
# them in the same transaction, so an erasure is all or nothing.
worker_ids_erased = Signal()
