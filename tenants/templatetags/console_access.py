"""The ``admins`` template filter (a builtin, see settings.TEMPLATES): ``{% if console|admins:key.project_id %}``
shows a change button only where the caller may make that change — a tenant admin everywhere, a
project admin in their projects (``Console.admins_project``, i.e. ``TenantAccess.can_in_project``);
``None`` (a tenant-wide object) needs a tenant role."""

from django import template

register = template.Library()


@register.filter
def admins(console, project_id) -> bool:
    return console.admins_project(project_id if project_id not in ("", None) else None)
