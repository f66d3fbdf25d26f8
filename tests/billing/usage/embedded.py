"""The usage reads on the embedded default (SQLite): run as a script in a fresh environment,
it builds the sample ledger and prints what the selectors answer, for test_embedded_sqlite to
compare with the same reads on PostgreSQL.

    DEBUG=true VAR_DIR=/tmp/x ENV_FILE=/dev/null python -m tests.billing.usage.embedded
"""

import csv
import io
import json
from datetime import date


def snapshot(tenant) -> dict:
    """Every grouping on both paths, the first rows, a model filter and the CSV, without
    what differs between databases (ids, key prefixes)."""
    from billing.export import csv_chunks
    from billing.models import UsageStatus
    from billing.usage_api import UsageSummaryOut
    from billing.usage_selectors import (
        GROUPINGS,
        usage_export_rows,
        usage_filters_build,
        usage_rows,
        usage_summary,
    )

    out = {}
    span = {"since": date(2025, 1, 2), "until": date(2025, 2, 10)}
    for group_by in GROUPINGS:
        for path, statuses in (("rollups", ()), ("ledger", UsageStatus.values)):
            filters = usage_filters_build(tenant=tenant, statuses=statuses, **span)
            data = json.loads(json.dumps(UsageSummaryOut(usage_summary(tenant=tenant, group_by=group_by,
                                                                        filters=filters)).data))
            for group in data["groups"]:
                group.pop("prefix")
                if group_by in ("model", "provider", "key"):
                    group.pop("key")
            out[f"{group_by}/{path}"] = data
    filters = usage_filters_build(tenant=tenant, **span)
    out["rows"] = [r.request_id for r in usage_rows(tenant=tenant, filters=filters)[:100]]
    smart = usage_filters_build(tenant=tenant, model="smart", **span)
    out["rows_smart"] = usage_rows(tenant=tenant, filters=smart).count()
    lines = list(csv.reader(io.StringIO("".join(csv_chunks(usage_export_rows(tenant=tenant, filters=filters))))))
    out["csv"] = [line[:6] + line[7:] for line in lines]  # without key_prefix
    return out


def main() -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from tenants.services import tenant_create
    from tests.billing.usage.factories import catalog_create, sample_record

    tenant = tenant_create(slug="acme", name="Acme").tenant
    tenant.timezone = "America/New_York"
    tenant.save()
    other = tenant_create(slug="other", name="Other").tenant
    sample_record(tenant, catalog_create(tenant=tenant, other=other))
    print(json.dumps({"vendor": connection.vendor, "snapshot": snapshot(tenant)}))


if __name__ == "__main__":
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    main()
