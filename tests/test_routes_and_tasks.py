"""The layout may move code between rooms, never what the outside world calls.

Every URL pattern (path and name) and every registered Celery task name is
compared with the list committed in `tests/data/routes_and_tasks.txt`. A change
there is deliberate: regenerate it with `python -m tests.test_routes_and_tasks`
and let the reviewer see the diff.
"""

from pathlib import Path

from django.urls import URLPattern, URLResolver, get_resolver

SNAPSHOT = Path(__file__).parent / "data" / "routes_and_tasks.txt"


def _patterns(resolver: URLResolver, prefix: str = "", namespace: str = ""):
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _patterns(entry, route, inner)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}{entry.name}" if entry.name else "-"
            yield f"url {route} {name}"


def routes_and_tasks() -> list[str]:
    from config.celery import app

    app.loader.import_default_modules()
    urls = sorted(
        line for line in _patterns(get_resolver()) if not line.split()[1].startswith("admin/")
    )
    tasks = sorted(f"task {name}" for name in app.tasks if not name.startswith("celery."))
    return urls + tasks


def test_url_paths_names_and_task_names_are_the_committed_ones():
    assert routes_and_tasks() == SNAPSHOT.read_text().splitlines()


if __name__ == "__main__":
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

    django.setup()
    SNAPSHOT.write_text("\n".join(routes_and_tasks()) + "\n")
