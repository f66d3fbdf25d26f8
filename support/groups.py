"""The ``support`` group: view-only admin access to every model of the apps below plus
``support.view_all_tenants``. Add a staff user to it to make them support staff."""

from django.apps import apps as global_apps

SUPPORT_GROUP = "support"
SUPPORT_APPS = ("tenants", "providers", "billing", "support")


def support_group_ensure(sender=None, apps=global_apps, using="default", **kwargs) -> None:
    """Create the group if needed and give it every ``view_*`` permission of SUPPORT_APPS
    (``support.view_all_tenants`` among them). A post_migrate receiver; safe to run again."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.using(using).get_or_create(name=SUPPORT_GROUP)
    perms = Permission.objects.using(using).filter(content_type__app_label__in=SUPPORT_APPS).filter(
        codename__startswith="view_"
    )
    group.permissions.add(*perms)
