# Slot counters for balancing (rows are filled from the items by create_assignment when missing), and the
# two judgment indexes that duplicated the foreign-key indexes on trial and assignment.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("crowd", "0001_initial"),
        ("experiments", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="TrialSlots",
            fields=[
                (
                    "trial",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="slots",
                        serialize=False,
                        to="experiments.trial",
                    ),
                ),
                ("held", models.IntegerField(default=0)),
            ],
        ),
        migrations.RemoveIndex(model_name="judgment", name="crowd_judgm_trial_i_76c094_idx"),
        migrations.RemoveIndex(model_name="judgment", name="crowd_judgm_assignm_950ed8_idx"),
    ]
