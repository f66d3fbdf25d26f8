"""The ``view_all_tenants`` permission moves from billing to support without losing a holder.

The permission row is kept and re-pointed: its content type ``billing.billingaccess`` becomes
``support.supportaccess``, so every user and group that held ``billing.view_all_tenants`` (the
support group among them) holds ``support.view_all_tenants``, and the post_migrate that follows
finds the permission already there instead of creating a second one. On a fresh database there
is nothing to move yet (post_migrate creates the permission under support). If both content
types exist (post_migrate ran after support/0001 but before this), the holders of the old rows
are added to the new ones and the old rows are deleted. Reversible: the reverse moves it back."""

from django.db import migrations

OLD = ("billing", "billingaccess")
NEW = ("support", "supportaccess")


def _move(apps, using: str, source: tuple[str, str], target: tuple[str, str]) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    content_types = ContentType.objects.using(using)
    old = content_types.filter(app_label=source[0], model=source[1]).first()
    if old is None:
        return  # a fresh database: post_migrate creates the permission where it now belongs
    new = content_types.filter(app_label=target[0], model=target[1]).first()
    if new is None:  # the usual upgrade: the content type changes its name, its rows stay
        old.app_label, old.model = target
        old.save(update_fields=["app_label", "model"])
        return
    for perm in Permission.objects.using(using).filter(content_type=old):
        twin = Permission.objects.using(using).filter(content_type=new, codename=perm.codename).first()
        if twin is None:
            perm.content_type = new
            perm.save(update_fields=["content_type"])
            continue
        twin.group_set.add(*perm.group_set.all())
        twin.user_set.add(*perm.user_set.all())
        perm.delete()
    old.delete()


def forward(apps, schema_editor) -> None:
    _move(apps, schema_editor.connection.alias, OLD, NEW)


def backward(apps, schema_editor) -> None:
    _move(apps, schema_editor.connection.alias, NEW, OLD)


class Migration(migrations.Migration):

    dependencies = [
        ('support', '0001_initial'),
        ('billing', '0011_billingaccess_moves_to_support'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('auth', '0012_alter_user_first_name_max_length'),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]
