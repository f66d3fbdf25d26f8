"""The ``support`` group: view-only admin access to every model plus view_all_tenants.
Add a staff user to it to make them support staff."""

from django.apps import apps as global_apps

SUPPORT_GROUP = "support"
SUPPORT_APPS = ("tenants", "providers", "billing")


def support_group_ensure(sender=None, apps=global_apps, using="default", **kwargs) -> None:
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.using(using).get_or_create(name=SUPPORT_GROUP)
    perms = Permission.objects.using(using).filter(content_type__app_label__in=SUPPORT_APPS).filter(
        codename__startswith="view_"
    )
    group.permissions.add(*perms)
