# contestkit/remote-env:<version>: the contest environment (stable-retro + gymnasium) and the env
# side of the bridge. The eval runtime starts it with `--game ... --bridge-dir ...` arguments.
ARG PARENT_IMAGE=python:3.11-slim
FROM ${PARENT_IMAGE}

# No pip caches in layers; pip and apt trust the CA bundle contestkit put in the context.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_PROGRESS_BAR=off \
    PYTHONUNBUFFERED=1 PIP_CERT=/etc/contestkit/ca-bundle.crt
COPY ca/ /

# Dependencies first: they change rarely, so this layer stays cached across code changes.
COPY requirements.txt /tmp/contestkit/requirements.txt
RUN python -m pip install -r /tmp/contestkit/requirements.txt && rm -rf /tmp/contestkit /root/.cache

# The toolkit's own code last: a code change rebuilds only this layer.
COPY dist/ /tmp/contestkit-dist/
RUN python -m pip install --no-deps /tmp/contestkit-dist/*.whl && rm -rf /tmp/contestkit-dist /root/.cache

WORKDIR /root/compo
ENTRYPOINT ["python", "-m", "contestkit.runs.envprogram"]
