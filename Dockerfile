# The controller image: `python -m controller run` (and `migrate`, `status`, ... as the command).
# Hummingbot is not installed here: it runs in its own official image (docker-compose.yml). Packages come
# from wheels only (TA-Lib's wheel bundles the C library), at the versions pinned in
# requirements/constraints.txt; the list is project.in plus the part of Hummingbot's runtime set that the
# controller imports itself.
FROM python:3.12.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app

COPY requirements/ requirements/
RUN pip install --only-binary=:all: -c requirements/constraints.txt -r requirements/project.in \
        numpy pandas numba TA-Lib PyYAML typer requests pydantic \
    && python -c "import talib, ccxt, psycopg, pandas"

COPY bridge/ bridge/
COPY controller/ controller/
COPY ml/ ml/
COPY shadow/ shadow/
COPY stats/ stats/
COPY supabase/migrations/ supabase/migrations/
COPY sql/ sql/
COPY conf/ conf/
COPY pyproject.toml ./

# Never root at run time; the embedded database is off in a container (DATABASE_URL is required).
RUN useradd --create-home --uid 10001 controller && chown -R controller /app
USER controller
ENV CONTROLLER_DATABASE__EMBEDDED=false

ENTRYPOINT ["python", "-m", "controller"]
CMD ["run"]
