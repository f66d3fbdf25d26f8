"""Support: the dashboards across every tenant (/support/), the support group and the
``support.view_all_tenants`` permission that makes staff support staff, and the Django admin's
cost columns. The top layer beside the gateway: it reads tenants, providers and billing, and
only config imports it."""
