"""Seed one TierLimit per tier: FREE $1/day, $5/week; PRO ×5, BUSINESS ×20, ENTERPRISE ×60."""

from __future__ import annotations

from django.db import migrations

FREE_DAILY_MICRODOLLARS = 1_000_000
FREE_WEEKLY_MICRODOLLARS = 5_000_000
MULTIPLIERS = {"FREE": 1, "PRO": 5, "BUSINESS": 20, "ENTERPRISE": 60}


def seed(apps, schema_editor):  # type: ignore[no-untyped-def]
    tier_limit = apps.get_model("ratelimits", "TierLimit")
    for tier, multiplier in MULTIPLIERS.items():
        tier_limit.objects.get_or_create(
            tier=tier,
            defaults={
                "daily_limit_microdollars": FREE_DAILY_MICRODOLLARS * multiplier,
                "weekly_limit_microdollars": FREE_WEEKLY_MICRODOLLARS * multiplier,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("ratelimits", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
