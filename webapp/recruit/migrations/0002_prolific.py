from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('recruit', '0001_platform_records'),
    ]

    operations = [
        migrations.AddField(
            model_name='decision',
            name='remote_id',
            field=models.CharField(blank=True, max_length=200),
        ),
    ]
