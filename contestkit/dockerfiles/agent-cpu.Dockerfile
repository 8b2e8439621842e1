# contestkit/agent:cpu: the smallest agent base. numpy + gymnasium + the bridge client (both the
# 2018 `gym_remote` API and contestkit's gymnasium client); no framework, no CUDA userland.
ARG PARENT_IMAGE=python:3.11-slim
FROM ${PARENT_IMAGE}

# PIP_CERT stays set so a user's `RUN pip install ...` on top works behind the same TLS proxy.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_PROGRESS_BAR=off \
    PYTHONUNBUFFERED=1 PIP_CERT=/etc/contestkit/ca-bundle.crt
COPY ca/ /

COPY requirements.txt /tmp/contestkit/requirements.txt
RUN python -m pip install -r /tmp/contestkit/requirements.txt && rm -rf /tmp/contestkit /root/.cache

# --no-deps: the agent side needs only numpy; the CLI's dependencies stay out of the image (so
# its console script is removed too). /opt/contestkit/site is put on sys.path for framework
# images that install local wheels there; /root/compo/tmp is where the bridge volume is mounted
# (so the 2018 agents' `tmp/sock` resolves) and /root/compo/out collects the agent's output.
COPY dist/ /tmp/contestkit-dist/
RUN python -m pip install --no-deps /tmp/contestkit-dist/*.whl \
 && rm -rf /tmp/contestkit-dist /root/.cache "$(command -v contestkit)" \
 && mkdir -p /opt/contestkit/site /root/compo/tmp /root/compo/out \
 && python -c "import sysconfig; open(sysconfig.get_paths()['purelib'] + '/contestkit-site.pth', 'w').write('/opt/contestkit/site\n')" \
 && python -c "import gym_remote.client, gym_remote.exceptions, contestkit.bridge"

WORKDIR /root/compo
CMD ["python", "-u", "/root/compo/agent.py"]
