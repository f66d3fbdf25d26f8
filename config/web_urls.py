"""Server-rendered pages: the tenant console (/app/) and the support dashboards (/support/)."""

urlpatterns: list = []
