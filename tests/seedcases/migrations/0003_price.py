from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('seedcases', '0002_publisher'),
    ]

    operations = [
        migrations.CreateModel(
            name='Price',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('label', models.CharField(max_length=50)),
                ('price_amount', models.DecimalField(decimal_places=2, max_digits=12)),
                ('price_currency', models.CharField(max_length=3)),
            ],
        ),
    ]
