# One image recipe for all three lab apps: `APP` names the app's folder.
#
# PYTHON_IMAGE is the official python image by default. The air-gapped build
# (scripts/offline-images) provides an image of the same name built from
# Debian's python3 package, with a wheelhouse and PIP_NO_INDEX set, so the
# `pip install` lines below take the same pinned versions from it instead of
# from the package index.
ARG PYTHON_IMAGE=python:3.13-slim
FROM ${PYTHON_IMAGE}

# The user the app server runs as: never root.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin wsgilab
# Where docker-compose.yml mounts the database's password volumes, owned by
# that user: a new named volume takes the ownership of the directory it is
# first mounted on, and the db-secrets service (this image) writes there.
RUN mkdir -p /run/wsgilab-db /run/wsgilab-db-admin && chown wsgilab /run/wsgilab-db /run/wsgilab-db-admin

# A virtualenv, so pip never touches the system Python (Debian's refuses it).
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Layers the three app images share, so a build makes them once: the two
# servers, then wsgi-lab's package (installed, not copied into the app).
# Nothing above `ARG APP` depends on which app this is.
COPY requirements/servers.txt /src/requirements/servers.txt
RUN pip install --requirement /src/requirements/servers.txt
COPY pyproject.toml /src/wsgilab-pkg/
COPY wsgilab/ /src/wsgilab-pkg/wsgilab/
RUN pip install --no-deps /src/wsgilab-pkg

ARG APP
# The app's own dependencies (Django, Flask, none); its file starts with
# `-r ../requirements/servers.txt`, already installed above.
COPY ${APP}/requirements.txt /src/${APP}/requirements.txt
RUN pip install --requirement /src/${APP}/requirements.txt && rm -rf /src

COPY gunicorn.conf.py uwsgi.ini granian.conf.py waitress.conf.py uvicorn.conf.py /etc/wsgi-lab/
COPY ${APP}/ /app/
# Your own WSGI middleware (<APP>_WSGI_MIDDLEWARE, docs/middleware.md): every app image has the folder.
COPY middleware/ /srv/middleware/
WORKDIR /app

USER wsgilab
EXPOSE 8000 3031
CMD ["python", "-m", "wsgilab.container.launch"]
