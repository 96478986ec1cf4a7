"""URLconf the OpenAPI generator walks: only the researcher API, with its real ``api/`` prefix.

Walking only these keeps the schema independent of the project's other (non-DRF) views and of the
project-wide ``DEFAULT_SCHEMA_CLASS`` setting.
"""

from django.urls import include, path

from webapp.lab.api.urls import data_patterns

urlpatterns = [path("api/", include(data_patterns))]
