"""The management API's routes for end users (the top list and blocks), mounted at /api/ by
config/urls.py."""

from django.urls import path

from billing import end_users_api

urlpatterns = [
    path("end-users", end_users_api.EndUserTopAPI.as_view(), name="api-end-users"),
    path("end-users/blocks", end_users_api.EndUserBlockListAPI.as_view(), name="api-end-user-blocks"),
    path("end-users/blocks/<int:block_id>", end_users_api.EndUserBlockDetailAPI.as_view(),
         name="api-end-user-block"),
]
