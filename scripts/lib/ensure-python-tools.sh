# Sourced by scripts/test and .ci/run: the metrics tests check /metrics with the reference Python
# parser (prometheus_client); install it for the current user when it is missing.
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
    echo "installing the Python prometheus_client package (metrics exposition-format checks)" >&2
    python3 -m pip install --quiet --disable-pip-version-check prometheus_client >&2 \
        || python3 -m pip install --quiet --disable-pip-version-check --user prometheus_client >&2 \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages prometheus_client >&2
fi
