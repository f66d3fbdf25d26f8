"""Memberships and project memberships say who manages them: "manual" (an owner, staff) or
"sso" (the SSO rules, which take them back when no rule gives them any more).

Existing rows are manual, except the tenant memberships the SSO rules created before this
migration: the rules were the only writer that added members as actor "system", so a membership
whose latest ``membership.create`` audit event has that actor is the rules' (a username changed
since does not match, and that membership stays manual, which never removes anyone)."""

from django.db import migrations, models


def sso_memberships_mark(apps, schema_editor):
    AuditEvent = apps.get_model("tenants", "AuditEvent")
    Membership = apps.get_model("tenants", "Membership")
    latest: dict[tuple[int, str], str] = {}
    events = (
        AuditEvent.objects.filter(action="membership.create", tenant__isnull=False)
        .order_by("id").values_list("tenant_id", "target", "actor")
    )
    for tenant_id, target, actor in events.iterator(chunk_size=2000):
        latest[(tenant_id, target)] = actor
    sso = [
        pk
        for pk, tenant_id, username in Membership.objects.values_list("pk", "tenant_id", "user__username")
        .iterator(chunk_size=2000)
        if latest.get((tenant_id, f"user:{username}")) == "system"
    ]
    for start in range(0, len(sso), 1000):
        Membership.objects.filter(pk__in=sso[start:start + 1000]).update(source="sso")


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0008_apikey_project_restrict'),
    ]

    operations = [
        migrations.AddField(
            model_name='membership',
            name='source',
            field=models.CharField(choices=[('manual', 'Added by a member or staff'), ('sso', 'Granted by the SSO rules')], default='manual', max_length=10),
        ),
        migrations.AddField(
            model_name='projectmembership',
            name='source',
            field=models.CharField(choices=[('manual', 'Added by a member or staff'), ('sso', 'Granted by the SSO rules')], default='manual', max_length=10),
        ),
        migrations.RunPython(sso_memberships_mark, migrations.RunPython.noop),
    ]
