# contestkit/agent:pytorch and contestkit/agent:tensorflow: contestkit/agent:cpu plus a CPU-only
# deep-learning framework. FRAMEWORK_PIP_ARGS says what pip installs (for torch: the CPU wheel
# index, or a pinned CPU build; a plain `torch` would pull a multi-GB CUDA build).
ARG PARENT_IMAGE=contestkit/agent:cpu

# Local wheels (wheels_dir, for machines without an index that carries the CPU build) are
# unpacked in a throwaway stage, so the wheel files themselves never land in a layer.
FROM ${PARENT_IMAGE} AS local-wheels
COPY wheels/ /tmp/contestkit-wheels/
RUN for wheel in /tmp/contestkit-wheels/*.whl; do \
      [ -e "$wheel" ] || continue; \
      python -m pip install --no-deps --target /opt/contestkit/site "$wheel" || exit 1; \
    done; mkdir -p /opt/contestkit/site

FROM ${PARENT_IMAGE}
ARG FRAMEWORK_PIP_ARGS
ARG FRAMEWORK_CHECK="pass"
COPY --from=local-wheels /opt/contestkit/site/ /opt/contestkit/site/
RUN test -n "$FRAMEWORK_PIP_ARGS" \
 && python -m pip install $FRAMEWORK_PIP_ARGS \
 && rm -rf /root/.cache \
 && python -c "$FRAMEWORK_CHECK"
