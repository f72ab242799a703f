# syntax=docker/dockerfile:1
# Slipway's container image: the Azure Functions Python host with Slipway installed, git and
# Node.js for workflow and deploy builds, and the built web UI. The same image runs in Azure
# (Function App, DOCKER|<image>), under docker-compose.dev.yml and docker-compose.prod.yml.

ARG NODE_IMAGE=node:20.19-bookworm-slim
# Python 3.12: the 4-python3.11 image is built on Debian 11, whose LTS ended on 2026-08-31 (its
# apt-get update fails once the release is archived); the 3.12 image is Debian 12 (README,
# "The base image").
ARG FUNCTIONS_IMAGE=mcr.microsoft.com/azure-functions/python:4-python3.12

# --- the web UI: only web/dist reaches the final image ---------------------------------------
FROM ${NODE_IMAGE} AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY web/ ./
RUN npm run build

# --- Node.js for the deploy pipeline's builds (npm, npx; yarn/pnpm through corepack) ----------
FROM ${NODE_IMAGE} AS node

# --- the Functions host with Slipway ----------------------------------------------------------
FROM ${FUNCTIONS_IMAGE}

ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \
    FUNCTIONS_WORKER_RUNTIME=python \
    PYTHON_THREADPOOL_THREAD_COUNT=16 \
    PYTHON_ISOLATE_WORKER_DEPENDENCIES=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home \
    SLIPWAY_WORKSPACE_DIR=/workspace \
    SLIPWAY_TEMP_DIR=/mnt/temp \
    SLIPWAY_WEB_DIR=/home/site/wwwroot/web/dist \
    SLIPWAY_GIT_DIR=/var/lib/slipway/git \
    SLIPWAY_STEPS_DIR=/var/lib/slipway/steps \
    SLIPWAY_ENVIRONMENTS_DIR=/var/lib/slipway/environments

# git fetches the connected repository and checks out projects to build. Versions are not
# pinned: the base image's Debian release fixes them, and pinning exact Debian revisions breaks
# the build as soon as the mirror drops a revision for a security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && ln -s ../lib/node_modules/corepack/dist/corepack.js /usr/local/bin/corepack \
    && node --version && npm --version

# The Static Web Apps CLI uploads deployments to Azure (`swa deploy`). Pinned exactly: versions
# before 2.0.9 exit 0 when the upload fails. --ignore-scripts skips the one install script in its
# tree, keytar's (a native keychain for `swa login`, never loaded when a deployment token is
# given). Its StaticSitesClient uploader is then fetched here, not during a deployment, by the
# CLI's own code: the release metadata at https://aka.ms/swalocaldeploy, the "stable" uploader it
# names, checked against the SHA-256 it gives and recorded in
# $HOME/.swa/deploy/StaticSitesClient.json. `swa deploy` looks there (HOME=/home, as the
# Functions base image and App Service set it) and downloads again only once Microsoft moves
# "stable" to a newer build.
RUN npm install --global --ignore-scripts --no-audit --no-fund --loglevel=error \
        @azure/static-web-apps-cli@2.0.10 \
    && NO_UPDATE_NOTIFIER=1 swa --version \
    && node --input-type=module -e " \
        const client = '/usr/local/lib/node_modules/@azure/static-web-apps-cli/dist/core/deploy-client.js'; \
        const { binary, buildId } = await (await import(client)).getDeployClientPath(); \
        console.log('StaticSitesClient', buildId, binary);" \
    && test -f /home/.swa/deploy/StaticSitesClient.json \
    && npm cache clean --force \
    && rm -rf /home/.npm

# Dependencies first, from pyproject.toml alone, so a source change does not reinstall them.
WORKDIR /opt/slipway
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt
# Installed in place (editable) from /opt/slipway/src: docker-compose.source.yml mounts a
# developer's src/ there to run an engine change without rebuilding the image (FR-017).
COPY src/ src/
RUN pip install --no-cache-dir --no-deps --editable . \
    && python -c "import slipway, slipway.functions" \
    && mkdir -p /workspace /mnt/temp /var/lib/slipway/git /var/lib/slipway/steps \
        /var/lib/slipway/environments \
    && chmod 0755 /var/lib/slipway /var/lib/slipway/steps /var/lib/slipway/environments \
    && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin slipway-step
# (slipway-step: workflow code, every load and step, runs as this unprivileged user, never as the
# platform's root, so it cannot read the platform's settings, keys, files or memory; see
# src/slipway/isolation/boundary.py.)

# Which azure-functions the worker will import. The Python worker bundles its own copy in
# /azure-functions-host/workers/python/<version>/LINUX/X64; with PYTHON_ISOLATE_WORKER_DEPENDENCIES=1
# it moves that folder behind the app's site-packages (and the working directory after it).
# Arrange sys.path the same way, import azure.functions, and fail the build unless it is the
# installed distribution within pyproject.toml's range.
RUN python -c "\
import importlib.metadata, pathlib, sys, tomllib; \
from pip._vendor.packaging.requirements import Requirement; \
worker = pathlib.Path('/azure-functions-host/workers/python/%d.%d/LINUX/X64' % sys.version_info[:2]); \
assert worker.is_dir(), f'no Python worker at {worker}'; \
sys.path = [p for p in sys.path if not p.startswith(str(worker))] + [str(worker), '/home/site/wwwroot']; \
import azure.functions as af; \
print('azure-functions', af.__version__, af.__file__); \
pins = [Requirement(d) for d in tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']]; \
(pin,) = [r for r in pins if r.name == 'azure-functions']; \
assert not af.__file__.startswith(str(worker)), 'the worker bundled azure-functions would be imported'; \
assert af.__version__ == importlib.metadata.version('azure-functions'), 'not the installed distribution'; \
assert pin.specifier.contains(af.__version__), f'azure-functions {af.__version__} is outside {pin}'; \
"

COPY function_app.py host.json /home/site/wwwroot/
COPY --from=web /web/dist /home/site/wwwroot/web/dist
WORKDIR /home/site/wwwroot

EXPOSE 80
# Liveness of the host and the app: /api/health answers without touching storage.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:80/api/health', timeout=4)"]
